package vault

import (
	"context"
	"io"

	"github.com/vmvault/vmvault/infra/vault/backup"
	"github.com/vmvault/vmvault/infra/vault/repo"
	"github.com/vmvault/vmvault/infra/vault/restore"
)

// The backup and restore pipelines' vocabulary under the names callers use.
type (
	Source         = backup.Source
	BackupOptions  = backup.BackupOptions
	DiskResult     = backup.DiskResult
	Progress       = repo.Progress
	Checkpoint     = repo.Checkpoint
	RestoreOptions = restore.RestoreOptions
	RestoreResult  = restore.RestoreResult
)

// BackupDisk stores src in the vault and returns its tree root (package
// backup: the feed, read-and-hash, collect and checkpoint stages).
func (v *Vault) BackupDisk(ctx context.Context, src Source, opt BackupOptions) (DiskResult, error) {
	return backup.Disk(ctx, v.r, src, opt)
}

// RestoreDisk writes the disk whose tree root is id to w (package restore).
func (v *Vault) RestoreDisk(ctx context.Context, id ID, w io.WriterAt, opt RestoreOptions) (RestoreResult, error) {
	return restore.Disk(ctx, v.r, id, w, opt)
}
