package qga

import "context"

// FreezeStatus is whether the guest's file systems are frozen.
type FreezeStatus string

const (
	Thawed FreezeStatus = "thawed"
	Frozen FreezeStatus = "frozen"
)

// FreezeStatus runs guest-fsfreeze-status.
func (c *Client) FreezeStatus(ctx context.Context) (FreezeStatus, error) {
	var s FreezeStatus
	err := c.Execute(ctx, "guest-fsfreeze-status", nil, &s)
	return s, err
}

// Freeze flushes and freezes the guest's file systems (on Windows guests
// the agent takes a VSS snapshot instead) and returns how many it froze.
// Until Thaw, writes in the guest block: the caller must thaw, also when
// what it froze for fails.
func (c *Client) Freeze(ctx context.Context) (int, error) {
	var n int
	err := c.Execute(ctx, "guest-fsfreeze-freeze", nil, &n)
	return n, err
}

// Thaw thaws the guest's file systems and returns how many it thawed
// (0 when none was frozen).
func (c *Client) Thaw(ctx context.Context) (int, error) {
	var n int
	err := c.Execute(ctx, "guest-fsfreeze-thaw", nil, &n)
	return n, err
}
