package restore

import (
	"context"
	"io"

	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/repo"
)

// restorer is one vault's restore: the repository it reads.
type restorer struct {
	*repo.Repo
}

// Disk writes the disk whose tree root is id from the vault r to w (see
// restorer.RestoreDisk).
func Disk(ctx context.Context, r *repo.Repo, id format.ID, w io.WriterAt, opt RestoreOptions) (RestoreResult, error) {
	return (&restorer{r}).RestoreDisk(ctx, id, w, opt)
}
