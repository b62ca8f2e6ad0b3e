package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// doc.go lists every file of the package, so a newcomer finds each
// workflow; a file added without its line fails here.
func TestDocListsEveryFile(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if !strings.Contains(string(doc), " "+f) {
			t.Errorf("doc.go does not list %s", f)
		}
	}
}
