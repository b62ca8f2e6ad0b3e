package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

var nowFunc = time.Now

// row is one measured step; JSON names are stable for $BENCH_JSON.
type row struct {
	Step           string  `json:"step"` // full, incr 1%, incr 5%, no change, restore, reference
	Tool           string  `json:"tool"`
	Wall           float64 `json:"wall_s"`
	Read           int64   `json:"read_bytes"`     // from the device (/proc/<pid>/io read_bytes)
	Uploaded       int64   `json:"uploaded_bytes"` // to storage (see the table's notes)
	Stored         int64   `json:"stored_added_bytes"`
	RSS            int64   `json:"peak_rss_bytes"`
	Changed        int64   `json:"changed_bytes,omitempty"` // bytes that differ from the previous step's image
	VsRestic       float64 `json:"vs_restic,omitempty"`     // vmvault's time / restic's
	VsBorg         float64 `json:"vs_borg,omitempty"`
	StoredVsRestic float64 `json:"stored_vs_restic,omitempty"`
	StoredVsBorg   float64 `json:"stored_vs_borg,omitempty"`
	Note           string  `json:"note,omitempty"`
}

func rowOf(u usage) row {
	return row{Wall: u.Wall.Seconds(), Read: u.ReadBytes, RSS: u.MaxRSS}
}

// peerOf names the peers a vmvault row is compared with.
func peerOf(tool string) (restic, borg string) {
	if strings.Contains(tool, "minio") {
		return "restic minio", "borg fs"
	}
	return "restic fs", "borg fs"
}

// ratios fills vmvault's ratios to its peers, step by step.
func ratios(rows []row) {
	find := func(tool, step string) *row {
		for i := range rows {
			if rows[i].Tool == tool && rows[i].Step == step {
				return &rows[i]
			}
		}
		return nil
	}
	for i := range rows {
		r := &rows[i]
		if !strings.HasPrefix(r.Tool, "vmvault") {
			continue
		}
		rn, bn := peerOf(r.Tool)
		if p := find(rn, r.Step); p != nil && p.Wall > 0 {
			r.VsRestic = r.Wall / p.Wall
			if p.Stored > mib && r.Step != "restore" {
				r.StoredVsRestic = float64(r.Stored) / float64(p.Stored)
			}
		}
		if p := find(bn, r.Step); p != nil && p.Wall > 0 {
			r.VsBorg = r.Wall / p.Wall
			if p.Stored > mib && r.Step != "restore" {
				r.StoredVsBorg = float64(r.Stored) / float64(p.Stored)
			}
		}
	}
}

func mibs(n int64) string {
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%.0f", float64(n)/mib)
}

func ratio(t, s float64) string {
	switch {
	case t == 0:
		return ""
	case s == 0:
		return fmt.Sprintf("%.2fx", t)
	}
	return fmt.Sprintf("%.2fx (%.2fx)", t, s)
}

// printTable writes the rows as one Markdown table.
func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| step\t| tool\t| wall s\t| read MiB\t| uploaded MiB\t| stored +MiB\t| peak RSS MiB\t| vmvault/restic time (stored)\t| vmvault/borg time (stored)\t| notes\t|")
	fmt.Fprintln(tw, "|---\t|---\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|--:\t|---\t|")
	for _, r := range rows {
		step := r.Step
		if r.Changed > 0 {
			step = fmt.Sprintf("%s (%s MiB changed)", r.Step, mibs(r.Changed))
		}
		rss := ""
		if r.RSS > 0 {
			rss = mibs(r.RSS)
		}
		read, up, st := mibs(r.Read), mibs(r.Uploaded), mibs(r.Stored)
		if r.Step == "reference" {
			read, up, st = "", "", ""
		}
		if r.Step == "restore" {
			st = ""
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %.2f\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", step, r.Tool, r.Wall, read, up, st, rss,
			ratio(r.VsRestic, r.StoredVsRestic), ratio(r.VsBorg, r.StoredVsBorg), r.Note)
	}
	tw.Flush()
	fmt.Fprint(w, legend)
}

// writeJSON writes the rows to path ($BENCH_JSON).
func writeJSON(path string, meta map[string]any, rows []row) error {
	data, err := json.MarshalIndent(map[string]any{"meta": meta, "rows": rows}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// targets says which of issue 9's targets this run meets.
func targets(w io.Writer, rows []row, changed1 int64) {
	get := func(tool, step string) *row {
		for i := range rows {
			if rows[i].Tool == tool && rows[i].Step == step {
				return &rows[i]
			}
		}
		return nil
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	cold := get("cold read", "reference")
	if again := get("cold read (again)", "reference"); cold != nil && again != nil && again.Wall < cold.Wall {
		cold = again // the faster of the two: the stricter reference
	}
	v := get("vmvault fs", "full")
	if cold == nil || v == nil {
		return
	}
	fmt.Fprintf(w, "\nIssue 9 targets (vmvault fs with its defaults; cold read %.2f s, the faster of the two):\n", cold.Wall)
	fmt.Fprintf(w, "- full backup within 1.2x of the cold read: %.2fx, %s\n", v.Wall/cold.Wall, verdict(v.Wall <= 1.2*cold.Wall))
	if i := get("vmvault fs", "incr 1%"); i != nil {
		fmt.Fprintf(w, "- checksum incremental within 1.1x of the cold read: %.2fx, %s\n", i.Wall/cold.Wall, verdict(i.Wall <= 1.1*cold.Wall))
		fmt.Fprintf(w, "- storage added by 1%% churn at most 2x the changed bytes: %.1fx (%s MiB for %s MiB), %s\n",
			float64(i.Stored)/float64(changed1), mibs(i.Stored), mibs(changed1), verdict(i.Stored <= 2*changed1))
	}
	if r, p := get("vmvault fs", "restore"), get("restic fs", "restore"); r != nil && p != nil {
		fmt.Fprintf(w, "- restore at least 2x faster than restic's: %.2fx faster, %s\n", p.Wall/r.Wall, verdict(p.Wall >= 2*r.Wall))
	}
	worst, worstStep := 0.0, ""
	for _, s := range []string{"full", "incr 1%", "incr 5%", "no change", "restore"} {
		if a, b := get("vmvault minio", s), get("vmvault fs", s); a != nil && b != nil && a.Wall/b.Wall > worst {
			worst, worstStep = a.Wall/b.Wall, s
		}
	}
	if worstStep != "" {
		fmt.Fprintf(w, "- S3 (MinIO) within 1.5x of the fs vault: worst %.2fx (%s), %s\n", worst, worstStep, verdict(worst <= 1.5))
	}
	var rss int64
	for _, r := range rows {
		if r.Tool == "vmvault fs" || r.Tool == "vmvault minio" || strings.HasPrefix(r.Tool, "vmvault e2e") {
			rss = max(rss, r.RSS)
		}
	}
	fmt.Fprintf(w, "- peak RSS at most 256 MiB: %s MiB with the defaults on this 4 GiB disk, %s here (independence from disk and vault size is not measured)\n", mibs(rss), verdict(rss <= 256*mib))
	if e := get("vmvault e2e small", "no change, CLI + dev server"); e != nil {
		fmt.Fprintf(w, "- no-change backup of a small VM end to end under 1 s: %.2f s, %s (100 at once on one worker: not measured)\n", e.Wall, verdict(e.Wall < 1))
	}
	fmt.Fprintln(w, "- CBT incremental, 16 data disks, 64 GiB disks, 100 million stored blocks: not measured by this command")
}

// legend explains the columns.
const legend = `
wall: the step's process from start to exit (restore: plus the fsync of the restored image). read: bytes the
step's process read from the block device (/proc/<pid>/io read_bytes; caches dropped before each step; a
MinIO restore shows ~0 because the MinIO server reads, not the client). uploaded: vmvault counts the bytes it
Puts to storage; restic and borg show what they wrote to the device (write_bytes: repository plus temp pack
files and caches; restic stages each pack in a temp file, so about twice its stored bytes). stored +: growth of
the repository (du of its folder; MinIO: sum of object sizes over the S3 API). peak RSS: VmHWM of the step's
process sampled every 10 ms (e2e rows: the worker's). Ratios: vmvault's wall time (stored growth) over the
peer's for the same step; below 1 is better for vmvault. On no change, restic skips the file by its files
cache (metadata) while vmvault's checksum comparison reads every allocated block; borg re-read it here.
`
