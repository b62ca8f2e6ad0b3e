package policy

import "fmt"

// InForce is the policy named name, given its record (found: whether the
// vault has one). This is the one default-policy rule: the default policy
// exists without a record, as Default(), until a record overrides it. ok
// is false for any other policy without a record.
func InForce(name string, rec Policy, found bool) (p Policy, ok bool) {
	switch {
	case found:
		return rec, true
	case name == DefaultName:
		return Default(), true
	default:
		return Policy{}, false
	}
}

// ShorterRetention lists the kinds of points new keeps fewer of than old,
// "daily 30 -> 10": what an immutable vault refuses.
func ShorterRetention(old, new Retention) []string {
	var shorter []string
	for _, r := range []struct {
		what     string
		old, new int
	}{{"daily", old.Daily, new.Daily}, {"weekly", old.Weekly, new.Weekly}, {"monthly", old.Monthly, new.Monthly}, {"yearly", old.Yearly, new.Yearly}} {
		if r.new < r.old {
			shorter = append(shorter, fmt.Sprintf("%s %d -> %d", r.what, r.old, r.new))
		}
	}
	return shorter
}

// Deletable refuses to delete the default policy, which always exists.
func Deletable(name string) error {
	if name == DefaultName {
		return fmt.Errorf("the default policy cannot be deleted: change it with 'vmvault policy update default'")
	}
	return nil
}
