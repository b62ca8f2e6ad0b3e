package replay

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/vmvault/vmvault/workflows"
)

// notRecorded names the workflows the worker registers that have no
// recorded history in testdata yet, each with the reason. Record one with
// the e2e test that runs the workflow (VMVAULT_RECORD_HISTORIES=dir, see
// recordHistory in testsuite/e2e) and remove its line here.
var notRecorded = map[string]string{}

// Every workflow the worker registers (workflows.All) is replayed against
// at least one recorded history, unless notRecorded says why not: a new
// workflow cannot miss replay testing by being left out of a list.
func TestEveryWorkflowHasARecordedHistory(t *testing.T) {
	recorded := recordedTypes(t)
	registered := map[string]bool{}
	for _, w := range workflows.All() {
		name := workflowName(w)
		registered[name] = true
		if _, ok := notRecorded[name]; len(recorded[name]) == 0 && !ok {
			t.Errorf("workflow %s is registered by the worker but has no recorded history in testdata (record one, or list it in notRecorded with the reason)", name)
		}
	}
	for name, why := range notRecorded {
		switch {
		case why == "":
			t.Errorf("notRecorded[%s] gives no reason", name)
		case !registered[name]:
			t.Errorf("notRecorded names %s, which the worker does not register", name)
		case len(recorded[name]) > 0:
			t.Errorf("notRecorded names %s, but %s records it: remove the line", name, strings.Join(recorded[name], ", "))
		}
	}
	var names []string
	for name := range recorded {
		if !registered[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		t.Errorf("testdata records workflow %s (%s), which the worker does not register", name, strings.Join(recorded[name], ", "))
	}
}

// recordedTypes maps each workflow type to the history files that start it.
func recordedTypes(t *testing.T) map[string][]string {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("recorded histories: %v %v", files, err)
	}
	types := map[string][]string{}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		evs := h.GetEvents()
		if len(evs) == 0 || evs[0].GetWorkflowExecutionStartedEventAttributes() == nil {
			t.Fatalf("%s: does not start with WorkflowExecutionStarted", f)
		}
		name := evs[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowType().GetName()
		types[name] = append(types[name], filepath.Base(f))
	}
	return types
}

// workflowName is the name the SDK registers a workflow function under: the
// function's name without its package.
func workflowName(fn any) string {
	full := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	return full[strings.LastIndex(full, ".")+1:]
}
