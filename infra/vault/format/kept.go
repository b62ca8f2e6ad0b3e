package format

import "time"

// KeptSnapshot records, on a recovery point, the point-in-time image its
// backup kept on the VM's host (the instant-restore tier): a restore to a
// new VM on that host, before Expires, is made from it without reading the
// vault. It is a hint, not data: the host checks the kept files exist and
// are intact, and the vault stays the source of truth. Same fields as
// platform.KeptSnapshot (the vault knows nothing of platforms).
type KeptSnapshot struct {
	Host    string            `json:"host"`
	VM      string            `json:"vm"`
	ID      string            `json:"id"`
	Paths   map[string]string `json:"paths"`
	Sizes   map[string]int64  `json:"sizes"`
	Created time.Time         `json:"created"`
	Expires time.Time         `json:"expires"`
}
