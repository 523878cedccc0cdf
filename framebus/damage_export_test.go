package framebus

// FixedField is one header field the producer's heartbeat compares with its
// own copy (heartbeat.go), for the tests that forge them.
type FixedField struct {
	Name string
	Off  uint64
	Size int
}

// FixedFields are the fixed header fields, state last (its offset, 4 bytes).
func FixedFields() []FixedField {
	var out []FixedField
	for _, f := range fixedFields {
		out = append(out, FixedField{f.name, f.off, f.size})
	}
	return append(out, FixedField{"state", offState, 4})
}

// OffWakeWaiters is the offset of the shared wake word's waiters count
// (amendment 7, the shared wake word), for the tests that forge it.
const OffWakeWaiters = offWakeWaiters
