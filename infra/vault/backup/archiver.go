package backup

import (
	"context"

	"github.com/vmvault/vmvault/infra/vault/repo"
)

// archiver is one vault's backup pipeline: the repository it writes to.
type archiver struct {
	*repo.Repo
}

// Disk stores src in the vault r and returns its tree root (see
// archiver.BackupDisk).
func Disk(ctx context.Context, r *repo.Repo, src Source, opt BackupOptions) (DiskResult, error) {
	return (&archiver{r}).BackupDisk(ctx, src, opt)
}
