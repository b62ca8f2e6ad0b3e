package platform

import "testing"

func TestConsistencySpellings(t *testing.T) {
	for _, tc := range []struct {
		c           Consistency
		name, level string
	}{
		{AppConsistent, "app-consistent", "app"},
		{FileConsistent, "file-consistent", "file"},
		{CrashConsistent, "crash-consistent", "crash"},
	} {
		if tc.c.String() != tc.name || tc.c.Level() != tc.level || !tc.c.Valid() {
			t.Errorf("%q: String %q, Level %q, Valid %v", tc.c, tc.c.String(), tc.c.Level(), tc.c.Valid())
		}
		for _, s := range []string{tc.name, tc.level} {
			if got, err := ParseConsistency(s); err != nil || got != tc.c {
				t.Errorf("ParseConsistency(%q) = %q, %v; want %q", s, got, err, tc.c)
			}
		}
	}
	for _, s := range []string{"", "-consistent", "App", "app-", "crash-consistent ", "consistent"} {
		if c, err := ParseConsistency(s); err == nil {
			t.Errorf("ParseConsistency(%q) = %q, want an error", s, c)
		}
		if Consistency(s).Valid() {
			t.Errorf("%q is valid", s)
		}
	}
	if _, err := ParseConsistency("bogus"); err == nil || err.Error() != `consistency "bogus": want app, file or crash` {
		t.Errorf("error %v", err)
	}
}
