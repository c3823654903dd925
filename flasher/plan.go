package flasher

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Plan is what a slot's device is known to offer before it is opened,
// from the fixture alone: the locks its backend can set and read back,
// and the flash an image may occupy. The pipeline checks a work order
// against every slot's Plan when it is loaded, before any device is
// touched; preflight checks the device's own values again.
type Plan struct {
	// Device names what the slot holds, for messages ("an ESP32-S3",
	// "an STM32 f4 (target stm32f4)").
	Device string
	// Locks lists the locks Lock accepts on every device the slot can
	// hold; nil means none.
	Locks []string
	// Flash lists the address ranges an image may occupy; nil means
	// the device's flash is known only once it is identified.
	Flash []Range
}

// Range is the addresses [Start, End).
type Range struct {
	Start, End uint64
}

func (r Range) String() string { return fmt.Sprintf("%#x-%#x", r.Start, r.End) }

// Problem is one reason a work order cannot run on a slot.
type Problem struct {
	// Lock is the index of the lock at fault in the locks Check was
	// given, or -1.
	Lock int
	// Segment is the name of the image segment at fault, or "".
	Segment string
	// Msg says what is wrong, in words an operator can act on.
	Msg string
}

// Check lists why img and locks cannot be done on the slot's device:
// each lock it does not offer, each segment outside its flash.
func (p Plan) Check(img Image, locks []string) []Problem {
	var out []Problem
	for i, l := range locks {
		if slices.Contains(p.Locks, l) {
			continue
		}
		has := "no lock at all"
		if len(p.Locks) > 0 {
			has = strings.Join(p.Locks, ", ")
		}
		out = append(out, Problem{Lock: i, Msg: fmt.Sprintf("%q is not a lock %s has (it has %s)", l, p.Device, has)})
	}
	if p.Flash == nil {
		return out
	}
	flash := merge(p.Flash)
	for _, s := range img.Segments {
		if !slices.ContainsFunc(flash, func(r Range) bool { return s.Addr >= r.Start && s.End() <= r.End }) {
			ranges := make([]string, len(flash))
			for i, r := range flash {
				ranges[i] = r.String()
			}
			out = append(out, Problem{Lock: -1, Segment: s.Name,
				Msg: fmt.Sprintf("%s (%#x-%#x, %d bytes) does not fit the flash of %s (%s)", s.Name, s.Addr, s.End(), len(s.Data), p.Device, strings.Join(ranges, ", "))})
		}
	}
	return out
}

// merge sorts ranges and joins those that touch or overlap, so that a
// segment across two adjacent flash regions (sectors of different sizes)
// fits.
func merge(rs []Range) []Range {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	var out []Range
	for _, r := range rs {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}
