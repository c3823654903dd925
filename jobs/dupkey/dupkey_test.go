package dupkey

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, doc, dup string
	}{
		{"none", `{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`, ""},
		{"top level", `{"id":"WO-1","id":"WO-2"}`, "id"},
		{"nested", `{"bundle":{"version":"1","version":"2"}}`, "bundle.version"},
		{"in an array", `{"bundle":{"artifacts":[{"sha256":"a"},{"sha256":"b","sha256":"c"}]}}`, "bundle.artifacts[1].sha256"},
		{"array of arrays", `[[1],[{"k":1,"k":2}]]`, "[1][0].k"},
		{"after a nested value", `{"a":{"x":1},"b":[1,2],"a":3}`, "a"},
		{"escaped the same", `{"a":1,"\u0061":2}`, "a"},
		{"case differs", `{"ID":1,"id":2}`, ""},
		{"same key, sibling objects", `[{"a":1},{"a":1}]`, ""},
		{"not JSON", `{"a":1,"a"`, "a"},
		{"broken before the duplicate", `{"a":1,,"a":2}`, ""},
		{"empty", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.doc))
			var de *Error
			switch {
			case tc.dup == "" && err != nil:
				t.Fatalf("Check(%s) = %v, want nil", tc.doc, err)
			case tc.dup != "" && (!errors.As(err, &de) || de.Path != tc.dup || !errors.Is(err, ErrDuplicate)):
				t.Fatalf("Check(%s) = %v, want the duplicate %s", tc.doc, err, tc.dup)
			}
		})
	}
}

func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"a":[{"b":1,"b":2}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Check(data) // must not panic
	})
}
