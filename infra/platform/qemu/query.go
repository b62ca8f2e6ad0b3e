package qemu

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmvault/vmvault/infra/platform/qemu/qmp"
)

type bitmapInfo struct {
	Name         string `json:"name"`
	Recording    bool   `json:"recording"`
	Busy         bool   `json:"busy"`
	Persistent   bool   `json:"persistent"`
	Inconsistent bool   `json:"inconsistent"`
}

type nodeInfo struct {
	NodeName string `json:"node-name"`
	Drv      string `json:"drv"`
	Image    struct {
		VirtualSize int64 `json:"virtual-size"`
	} `json:"image"`
	DirtyBitmaps []bitmapInfo `json:"dirty-bitmaps"`
}

func queryNodes(ctx context.Context, c *qmp.Client) (map[string]nodeInfo, error) {
	var nodes []nodeInfo
	if err := c.Execute(ctx, "query-named-block-nodes", map[string]any{"flat": true}, &nodes); err != nil {
		return nil, err
	}
	out := map[string]nodeInfo{}
	for _, n := range nodes {
		out[n.NodeName] = n
	}
	return out, nil
}

func queryJobs(ctx context.Context, c *qmp.Client) (map[string]bool, error) {
	var jobs []struct {
		Device string `json:"device"`
	}
	if err := c.Execute(ctx, "query-block-jobs", nil, &jobs); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, j := range jobs {
		out[j.Device] = true
	}
	return out, nil
}

func queryExports(ctx context.Context, c *qmp.Client) (map[string]bool, error) {
	var exps []struct {
		ID string `json:"id"`
	}
	if err := c.Execute(ctx, "query-block-exports", nil, &exps); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range exps {
		out[e.ID] = true
	}
	return out, nil
}

// waitGone polls query until id is absent.
func waitGone(ctx context.Context, what, id string, query func(context.Context) (map[string]bool, error)) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := query(ctx)
		if err != nil {
			return err
		}
		if !m[id] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s still there after 20 s", what, id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// bitmapPrefix starts the names of the dirty bitmaps vmvault owns:
// vmvault-<generation>-<snapshot hash>.
const bitmapPrefix = "vmvault-"

func bitmapName(gen int, hash string) string { return fmt.Sprintf("%s%d-%s", bitmapPrefix, gen, hash) }

// bitmapGen is the generation in a vmvault bitmap's name; ok is false for
// other bitmaps.
func bitmapGen(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, bitmapPrefix)
	if !ok {
		return 0, false
	}
	g, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(g)
	return n, err == nil && n > 0
}

// ownBitmaps are vmvault's bitmaps on a node, oldest first.
func ownBitmaps(n nodeInfo) []bitmapInfo {
	var out []bitmapInfo
	for _, b := range n.DirtyBitmaps {
		if _, ok := bitmapGen(b.Name); ok {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := bitmapGen(out[i].Name)
		b, _ := bitmapGen(out[j].Name)
		return a < b
	})
	return out
}
