package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vmvault/vmvault/infra/vault/storage/s3"
)

// tool is one backup program on one storage, driven through the same
// steps on the same images.
type tool interface {
	name() string
	init(ctx context.Context) error
	// backup backs up <vmroot>/bench/os.raw as it is now.
	backup(ctx context.Context) (row, error)
	// restore restores the latest backup to a file under out and syncs it.
	restore(ctx context.Context, out string) (row, error)
	// stored is the space the repository takes now.
	stored(ctx context.Context) (int64, error)
}

// env is what every tool shares: where the VM is, where repositories go.
type env struct {
	vmRoot string // images root; the disk is vmRoot/bench/os.raw
	work   string // scratch for repositories and caches
	exe    string // this binary, for vmvault steps
	minio  *minio
}

// storedOf measures a repository: du of a folder, or the objects of a bucket.
func storedOf(ctx context.Context, dir string, cfg *s3.Config) (int64, error) {
	if cfg == nil {
		return duBytes(dir), nil
	}
	be, err := s3.New(ctx, *cfg)
	if err != nil {
		return 0, err
	}
	var n int64
	err = be.List(ctx, "", func(_ string, size int64) error { n += size; return nil })
	return n, err
}

// ---- vmvault

type vmvaultTool struct {
	env
	label string
	req   stepReq // vault location and options
	last  string  // tree root of the latest backup
}

func (t *vmvaultTool) name() string { return t.label }

func (t *vmvaultTool) run(ctx context.Context, req stepReq) (usage, stepResp, error) {
	arg, _ := json.Marshal(req)
	u, err := measured(ctx, exec.CommandContext(ctx, t.exe, childArg, string(arg)))
	var resp stepResp
	if err == nil {
		err = json.Unmarshal(u.Stdout, &resp)
	}
	return u, resp, err
}

func (t *vmvaultTool) init(ctx context.Context) error {
	req := t.req
	req.Op = "init"
	_, _, err := t.run(ctx, req)
	return err
}

func (t *vmvaultTool) backup(ctx context.Context) (row, error) {
	req := t.req
	req.Op, req.VMRoot, req.Parent = "backup", t.vmRoot, t.last
	u, resp, err := t.run(ctx, req)
	if err != nil {
		return row{}, err
	}
	t.last = resp.Root
	r := rowOf(u)
	r.Uploaded = resp.Uploaded
	r.Note = fmt.Sprintf("%s; scanned %d MiB, new %d MiB", resp.Method, resp.Stats.ScannedBytes>>20, resp.Stats.NewBytes>>20)
	return r, nil
}

func (t *vmvaultTool) restore(ctx context.Context, out string) (row, error) {
	req := t.req
	req.Op, req.Root, req.OutDir = "restore", t.last, out
	u, resp, err := t.run(ctx, req)
	if err != nil {
		return row{}, err
	}
	r := rowOf(u)
	r.Note = fmt.Sprintf("wrote %d MiB of %d MiB (holes skipped), synced", resp.Written>>20, resp.Size>>20)
	return r, nil
}

func (t *vmvaultTool) stored(ctx context.Context) (int64, error) {
	return storedOf(ctx, t.req.FSDir, t.req.S3)
}

// ---- restic

type resticTool struct {
	env
	label string
	repo  string     // local folder, or "" for S3
	s3    *s3.Config // MinIO bucket
}

func (t *resticTool) name() string { return t.label }

func (t *resticTool) cmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "restic", append([]string{"-q"}, args...)...)
	c.Dir = dir
	repo := t.repo
	c.Env = append(os.Environ(), "RESTIC_PASSWORD="+passphrase, "RESTIC_CACHE_DIR="+filepath.Join(t.work, t.label+"-cache"))
	if t.s3 != nil {
		repo = "s3:" + t.s3.Endpoint + "/" + t.s3.Bucket
		c.Env = append(c.Env, "AWS_ACCESS_KEY_ID="+t.s3.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+t.s3.SecretAccessKey, "AWS_DEFAULT_REGION="+t.s3.Region)
	}
	c.Env = append(c.Env, "RESTIC_REPOSITORY="+repo)
	return c
}

func (t *resticTool) init(ctx context.Context) error {
	_, err := measured(ctx, t.cmd(ctx, t.work, "init"))
	return err
}

func (t *resticTool) backup(ctx context.Context) (row, error) {
	u, err := measured(ctx, t.cmd(ctx, t.vmRoot, "backup", "--host", "bench", "bench/os.raw"))
	return peerRow(u, t.s3 != nil), err
}

func (t *resticTool) restore(ctx context.Context, out string) (row, error) {
	return restoreAndSync(ctx, t.cmd(ctx, out, "restore", "latest", "--target", out), out)
}

func (t *resticTool) stored(ctx context.Context) (int64, error) {
	return storedOf(ctx, t.repo, t.s3)
}

// ---- borg

type borgTool struct {
	env
	label string
	repo  string
	n     int
}

func (t *borgTool) name() string { return t.label }

func (t *borgTool) cmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "borg", args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "BORG_PASSPHRASE="+passphrase, "BORG_REPO="+t.repo,
		"BORG_BASE_DIR="+filepath.Join(t.work, t.label+"-base"))
	return c
}

func (t *borgTool) init(ctx context.Context) error {
	_, err := measured(ctx, t.cmd(ctx, t.work, "init", "--encryption=repokey-blake2"))
	return err
}

// backup uses borg's recommended settings for VM images: a fixed 4 MiB
// chunker that skips holes.
func (t *borgTool) backup(ctx context.Context) (row, error) {
	t.n++
	u, err := measured(ctx, t.cmd(ctx, t.vmRoot, "create", "--chunker-params", "fixed,4194304", "--sparse", fmt.Sprintf("::b%d", t.n), "bench/os.raw"))
	return peerRow(u, false), err
}

func (t *borgTool) restore(ctx context.Context, out string) (row, error) {
	return restoreAndSync(ctx, t.cmd(ctx, out, "extract", "--sparse", fmt.Sprintf("::b%d", t.n)), out)
}

func (t *borgTool) stored(ctx context.Context) (int64, error) { return duBytes(t.repo), nil }

// peerRow: restic's and borg's uploads are what they wrote to the device
// (their repository and cache), or to sockets for S3.
func peerRow(u usage, net bool) row {
	r := rowOf(u)
	r.Uploaded = u.WriteB
	if net {
		r.Uploaded = u.WChar
	}
	return r
}

// restoreAndSync runs a restore, then syncs the restored image; the
// fsync is part of the restore's time.
func restoreAndSync(ctx context.Context, cmd *exec.Cmd, out string) (row, error) {
	u, err := measured(ctx, cmd)
	if err != nil {
		return row{}, err
	}
	r := rowOf(u)
	start := nowFunc()
	path, err := findFile(out, "os.raw")
	if err == nil {
		err = fsync(path)
	}
	r.Wall += nowFunc().Sub(start).Seconds()
	r.Note = fmt.Sprintf("wrote %d MiB, then fsync", u.WriteB>>20)
	return r, err
}
