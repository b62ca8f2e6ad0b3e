package repo

import "github.com/vmvault/vmvault/infra/vault/format"

// Progress is reported while a disk is backed up or restored.
type Progress struct {
	Disk       string           `json:"disk"`
	SizeBytes  int64            `json:"size_bytes"`
	DoneBytes  int64            `json:"done_bytes"` // logical offset reached
	Stats      format.DiskStats `json:"stats"`
	BytesPerS  float64          `json:"bytes_per_s"`
	Checkpoint *Checkpoint
	// NextLeaf is, for a restore, the first leaf not yet written.
	NextLeaf int `json:"next_leaf,omitempty"`
}

// Checkpoint is the durable part of an interrupted disk backup, small and of
// constant size whatever the disk's size, so that it fits in a heartbeat:
// the first NextBlock/LeafEntries leaves of the disk's tree are listed in
// the sealed object Ref (under checkpoints/), and they and every blob they
// reference are stored and indexed. A retried backup starts at NextBlock.
type Checkpoint struct {
	NextBlock int64            `json:"next_block"`
	Ref       string           `json:"ref"`
	Stats     format.DiskStats `json:"stats"`
}
