package policy

// Retention is how many recovery points of each kind a policy keeps: the
// newest point of each of the last Daily days, Weekly weeks, Monthly months
// and Yearly years (Azure's daily/weekly/monthly/yearly retention). Zero
// keeps none of that kind.
type Retention struct {
	Daily   int `json:"daily"`
	Weekly  int `json:"weekly,omitempty"`
	Monthly int `json:"monthly,omitempty"`
	Yearly  int `json:"yearly,omitempty"`
}
