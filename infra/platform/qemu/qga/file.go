package qga

import (
	"context"
	"errors"
	"fmt"
)

// chunk is how much one guest-file-read or -write moves: well below the
// agent's message limits once base64-encoded.
const chunk = 1 << 20

// FileOpen opens path in the guest with an fopen mode ("r", "w", "a", ...)
// and returns the agent's handle.
func (c *Client) FileOpen(ctx context.Context, path, mode string) (int64, error) {
	var h int64
	err := c.Execute(ctx, "guest-file-open", map[string]any{"path": path, "mode": mode}, &h)
	return h, err
}

// FileClose closes a handle from FileOpen.
func (c *Client) FileClose(ctx context.Context, h int64) error {
	return c.Execute(ctx, "guest-file-close", map[string]any{"handle": h}, nil)
}

// FileWrite writes data at the handle's position; it returns how many
// bytes the guest wrote.
func (c *Client) FileWrite(ctx context.Context, h int64, data []byte) (int, error) {
	var r struct {
		Count int `json:"count"`
	}
	// []byte marshals as base64, which is what buf-b64 is.
	err := c.Execute(ctx, "guest-file-write", map[string]any{"handle": h, "buf-b64": data}, &r)
	return r.Count, err
}

// FileRead reads up to n bytes at the handle's position; eof says the
// file ended.
func (c *Client) FileRead(ctx context.Context, h int64, n int) (data []byte, eof bool, err error) {
	var r struct {
		Buf []byte `json:"buf-b64"`
		EOF bool   `json:"eof"`
	}
	err = c.Execute(ctx, "guest-file-read", map[string]any{"handle": h, "count": n}, &r)
	return r.Buf, r.EOF, err
}

// WriteFile creates or truncates path in the guest and writes data to it.
// The guest's umask decides its mode; run chmod with Exec when it matters.
func (c *Client) WriteFile(ctx context.Context, path string, data []byte) (err error) {
	h, err := c.FileOpen(ctx, path, "w")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.FileClose(ctx, h); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	for len(data) > 0 {
		n := min(len(data), chunk)
		w, err := c.FileWrite(ctx, h, data[:n])
		if err != nil {
			return err
		}
		if w <= 0 {
			return fmt.Errorf("qga guest-file-write %s: wrote nothing", path)
		}
		data = data[w:]
	}
	return nil
}

// ReadFile reads path from the guest, refusing files over max bytes.
func (c *Client) ReadFile(ctx context.Context, path string, max int) (data []byte, err error) {
	h, err := c.FileOpen(ctx, path, "r")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := c.FileClose(ctx, h); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	for {
		b, eof, err := c.FileRead(ctx, h, chunk)
		if err != nil {
			return nil, err
		}
		data = append(data, b...)
		if len(data) > max {
			return nil, fmt.Errorf("qga read %s: larger than %d bytes", path, max)
		}
		if eof || len(b) == 0 {
			return data, nil
		}
	}
}
