package platform

import (
	"fmt"
	"strings"
)

// Consistency of a snapshot, strongest first. It has one spelling, the
// long one ("app-consistent"): recovery points store it, jobs report it and
// search attributes hold it. Level is the short word ("app") that CLI flags
// and policies take; ParseConsistency reads either.
type Consistency string

const (
	AppConsistent   Consistency = "app-consistent"
	FileConsistent  Consistency = "file-consistent"
	CrashConsistent Consistency = "crash-consistent"
)

// Consistencies lists every consistency, strongest first.
var Consistencies = []Consistency{AppConsistent, FileConsistent, CrashConsistent}

const consistentSuffix = "-consistent"

// String is the one spelling: "app-consistent", "file-consistent" or
// "crash-consistent".
func (c Consistency) String() string { return string(c) }

// Level is the short word for c that flags and policies use: "app",
// "file" or "crash".
func (c Consistency) Level() string { return strings.TrimSuffix(string(c), consistentSuffix) }

// Valid says whether c is one of Consistencies.
func (c Consistency) Valid() bool {
	for _, k := range Consistencies {
		if c == k {
			return true
		}
	}
	return false
}

// ParseConsistency reads a consistency in either spelling: its level
// ("app", "file", "crash", as flags and policies write it) or its name
// ("app-consistent", ...).
func ParseConsistency(s string) (Consistency, error) {
	for _, k := range Consistencies {
		if s == k.Level() || s == k.String() {
			return k, nil
		}
	}
	return "", fmt.Errorf("consistency %q: want app, file or crash", s)
}
