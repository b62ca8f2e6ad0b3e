package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/extent"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/platform/images"
	"github.com/vmvault/vmvault/infra/vault"
	"github.com/vmvault/vmvault/infra/vault/storage"
	"github.com/vmvault/vmvault/infra/vault/storage/fs"
	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// childArg is the subcommand the bench re-executes itself with, so that a
// vmvault step runs in its own process: its peak RSS and I/O are its own,
// as restic's and borg's are.
const childArg = "-vmvault-step"

// passphrase protects the bench's vaults and repositories.
const passphrase = "vmvault bench passphrase"

// stepReq is one vmvault step, passed to the child as JSON.
type stepReq struct {
	Op          string     `json:"op"` // init, backup, restore, read
	FSDir       string     `json:"fs_dir,omitempty"`
	S3          *s3.Config `json:"s3,omitempty"`
	BlockSize   int        `json:"block_size,omitempty"`
	PackSize    int        `json:"pack_size,omitempty"`
	Compression string     `json:"compression,omitempty"`
	VMRoot      string     `json:"vm_root,omitempty"` // images platform root, VM "bench"
	Parent      string     `json:"parent,omitempty"`
	OutDir      string     `json:"out_dir,omitempty"` // restore: staged disk goes here
	Root        string     `json:"root,omitempty"`    // restore: tree root
	Image       string     `json:"image,omitempty"`   // read: image to read
}

// stepResp is what the child reports on stdout.
type stepResp struct {
	Root     string          `json:"root,omitempty"`
	Size     int64           `json:"size,omitempty"`
	Stats    vault.DiskStats `json:"stats"`
	Uploaded int64           `json:"uploaded"` // bytes Put to storage
	Read     int64           `json:"read"`     // bytes the reader returned
	Written  int64           `json:"written"`  // restore: bytes written to the disk file
	Staged   string          `json:"staged"`   // restore: the staged file
	Compress string          `json:"compress"` // the vault's compression
	BlockSz  int             `json:"block_size"`
	Method   string          `json:"method,omitempty"`
}

// countingBackend counts the bytes the vault writes to storage.
type countingBackend struct {
	storage.Backend
	put atomic.Int64
}

func (c *countingBackend) Put(ctx context.Context, key string, data []byte) error {
	c.put.Add(int64(len(data)))
	return c.Backend.Put(ctx, key, data)
}

func (c *countingBackend) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	c.put.Add(int64(len(data)))
	return c.Backend.PutIfAbsent(ctx, key, data)
}

func childMain(arg string) {
	var req stepReq
	if err := json.Unmarshal([]byte(arg), &req); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(2)
	}
	resp, err := runStep(context.Background(), req)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s: %v\n", req.Op, err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(resp)
}

func runStep(ctx context.Context, req stepReq) (stepResp, error) {
	if req.Op == "read" {
		return coldRead(req.Image)
	}
	var be storage.Backend
	var err error
	if req.S3 != nil {
		be, err = s3.New(ctx, *req.S3)
	} else {
		be, err = fs.New(req.FSDir)
	}
	if err != nil {
		return stepResp{}, err
	}
	cb := &countingBackend{Backend: be}
	var v *vault.Vault
	if req.Op == "init" {
		if req.S3 != nil {
			if err := s3.EnsureBucket(ctx, *req.S3); err != nil {
				return stepResp{}, err
			}
		}
		v, err = vault.Init(ctx, cb, []byte(passphrase), vault.InitOptions{BlockSize: req.BlockSize, PackSize: req.PackSize, Compression: req.Compression})
	} else {
		v, err = vault.Open(ctx, cb, []byte(passphrase))
	}
	if err != nil {
		return stepResp{}, err
	}
	resp := stepResp{Compress: v.Config().Compression, BlockSz: v.Config().BlockSize}
	switch req.Op {
	case "init":
	case "backup":
		err = backupStep(ctx, v, req, &resp)
	case "restore":
		err = restoreStep(ctx, v, req, &resp)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	resp.Uploaded = cb.put.Load()
	return resp, err
}

// countingReader counts what a disk reader returned.
type countingReader struct {
	platform.DiskReader
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.DiskReader.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// backupStep backs up VM "bench" of the images platform at req.VMRoot as
// a worker's backup activity would, without Temporal: snapshot, open the
// disk, its data extents, BackupDisk against the parent, then the
// recovery point.
func backupStep(ctx context.Context, v *vault.Vault, req stepReq, resp *stepResp) error {
	p, err := images.New(req.VMRoot)
	if err != nil {
		return err
	}
	started := time.Now()
	snap, err := p.CreateSnapshot(ctx, "bench", platform.SnapshotRequest{ID: fmt.Sprint("s", started.UnixNano()), Consistency: platform.CrashConsistent})
	if err != nil {
		return err
	}
	defer p.DeleteSnapshot(ctx, snap)
	dr, err := p.OpenDisk(ctx, snap, "os")
	if err != nil {
		return err
	}
	r := &countingReader{DiskReader: dr}
	defer r.Close()
	pext, err := r.DataExtents(ctx)
	if err != nil {
		return err
	}
	ext := make([]extent.Extent, 0, len(pext))
	for _, e := range pext {
		ext = append(ext, extent.Extent{Offset: e.Offset, Length: e.Length})
	}
	opt := vault.BackupOptions{Disk: "os", Extents: ext}
	typ := vault.BackupFull
	if req.Parent != "" {
		id, err := vault.ParseID(req.Parent)
		if err != nil {
			return err
		}
		opt.Parent, typ = &id, vault.BackupIncremental
	}
	res, err := v.BackupDisk(ctx, r, opt)
	if err != nil {
		return err
	}
	rp := vault.RecoveryPoint{
		ID: fmt.Sprint("rp-", started.UnixNano()), VM: "bench", Host: "bench", Type: typ,
		Consistency: platform.CrashConsistent.String(), StartedAt: started, CompletedAt: time.Now(), Job: "bench",
		Metadata: []byte("{}"), SnapshotToken: snap.Token,
		Disks: []vault.DiskRecord{{Name: "os", Role: "os", SizeBytes: res.Size, Root: res.Root, Method: res.Method, Stats: res.Stats}},
	}
	if err := v.SaveRecoveryPoint(ctx, rp); err != nil {
		return err
	}
	resp.Root, resp.Size, resp.Stats, resp.Read, resp.Method = res.Root.String(), res.Size, res.Stats, r.n.Load(), string(res.Method)
	return nil
}

// restoreStep restores the tree into a staged disk file, which Close
// syncs: the restore ends when its data is durable.
func restoreStep(ctx context.Context, v *vault.Vault, req stepReq, resp *stepResp) error {
	id, err := vault.ParseID(req.Root)
	if err != nil {
		return err
	}
	root, err := v.Repo().LoadRoot(ctx, id)
	if err != nil {
		return err
	}
	w, err := diskfile.Stage(req.OutDir, "os.raw", root.Size, "bench")
	if err != nil {
		return err
	}
	res, err := v.RestoreDisk(ctx, id, w, vault.RestoreOptions{Disk: "os"})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	resp.Size, resp.Written, resp.Staged = res.Size, res.WrittenBytes, w.Path()
	return err
}

// coldRead reads the allocated extents of an image in order, 4 MiB at a
// time, on one thread: the physical reference of a backup's read.
func coldRead(path string) (stepResp, error) {
	f, err := os.Open(path)
	if err != nil {
		return stepResp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return stepResp{}, err
	}
	spans, err := dataSpans(f, fi.Size())
	if err != nil {
		return stepResp{}, err
	}
	buf := make([]byte, 4*mib)
	var n int64
	for _, s := range spans {
		for off := s.off; off < s.off+s.n; {
			m, err := f.ReadAt(buf[:min(int64(len(buf)), s.off+s.n-off)], off)
			n += int64(m)
			off += int64(m)
			if err != nil && !errors.Is(err, io.EOF) {
				return stepResp{}, err
			}
			if m == 0 {
				break
			}
		}
	}
	return stepResp{Read: n, Size: fi.Size()}, nil
}
