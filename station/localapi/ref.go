package localapi

import (
	"fmt"
	"regexp"
	"strings"
)

var refID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseRef returns the work order id in what an operator typed or a
// scanner sent: "WO-123", "WO:WO-123", "]C1WO-123" (an AIM symbology
// identifier), with spaces and control characters around it. The daemon
// loads the id it returns; the kiosk tells a rescan of the loaded work
// order by it.
func ParseRef(ref string) (string, error) {
	s := strings.TrimFunc(ref, func(r rune) bool { return r <= ' ' || r == 0x7f })
	// AIM symbology identifier: "]" then a letter and a digit.
	if len(s) >= 3 && s[0] == ']' && isLetter(s[1]) && s[2] >= '0' && s[2] <= '9' {
		s = s[3:]
	}
	for _, p := range []string{"WO:", "WO=", "WO "} {
		if len(s) > len(p) && strings.EqualFold(s[:len(p)], p) {
			s = strings.TrimSpace(s[len(p):])
			break
		}
	}
	if !refID.MatchString(s) {
		return "", fmt.Errorf("%q is not a work order id: scan the work order's barcode again, or type its id (letters, digits, '.', '_', '-')", ref)
	}
	return s, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
