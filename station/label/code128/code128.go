package code128

import (
	"errors"
	"fmt"
	"strings"
)

// FNC1 stands for the Function 1 character in the data given to Encode.
// As the first character it makes the symbol a GS1-128 symbol.
const FNC1 rune = '\u00f1'

// Set is a Code 128 code set.
type Set byte

// The three code sets (ISO/IEC 15417, 4.3).
const (
	// SetA encodes ASCII 0 to 95: upper case, digits, punctuation and
	// control characters.
	SetA Set = 'A'
	// SetB encodes ASCII 32 to 127: upper and lower case, digits and
	// punctuation.
	SetB Set = 'B'
	// SetC encodes pairs of digits, 00 to 99, as one symbol character.
	SetC Set = 'C'
)

// Symbol character values with a meaning of their own (ISO/IEC 15417,
// table 1).
const (
	valueCodeC  = 99  // Code C in sets A and B
	valueCodeB  = 100 // Code B in sets A and C
	valueCodeA  = 101 // Code A in sets B and C
	valueFNC1   = 102 // FNC1 in every set
	valueStartA = 103 // Start A
	valueStartB = 104 // Start B
	valueStartC = 105 // Start C
)

// patterns holds each symbol character's three bars and three spaces, in
// modules, bar first; index 106 is the stop pattern, which has a fourth
// bar (ISO/IEC 15417, table 1).
var patterns = [107]string{
	"212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213",
	"221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132",
	"221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211",
	"212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
	"231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331",
	"231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111",
	"314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214",
	"112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
	"111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
	"214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141",
	"114131", "311141", "411131", "211412", "211214", "211232", "2331112",
}

// char is one symbol character between the start and the check character.
type char struct {
	value int
	// set is the code set in force where the character stands; for a
	// code set change, the set it changes to is to.
	set, to Set
	// data is the input it encodes: one character, two digits, or FNC1;
	// "" for a code set change.
	data []rune
}

// Symbol is an encoded Code 128 symbol: a start character, the symbol
// characters, and the check character; the stop pattern is implied.
type Symbol struct {
	start Set
	chars []char
}

// Encode encodes data (ASCII, with FNC1 for Function 1) in the fewest
// symbol characters. Among encodings of the same length it keeps the code
// set it is in, and prefers B, then C, then A.
func Encode(data string) (Symbol, error) {
	in := []rune(data)
	if len(in) == 0 {
		return Symbol{}, errors.New("code 128: no data")
	}
	for i, r := range in {
		if r > 127 && r != FNC1 {
			return Symbol{}, fmt.Errorf("code 128: character %q at %d is not ASCII", r, i)
		}
	}
	sets := [3]Set{SetB, SetC, SetA} // the order ties are broken in
	const inf = 1 << 30
	// cost[i][k] is the fewest symbol characters that encode in[i:] when
	// set sets[k] is in force.
	cost := make([][3]int, len(in)+1)
	// step returns how many runes one symbol character in set s takes
	// at i, or 0 if s cannot encode in[i].
	step := func(s Set, i int) int {
		r := in[i]
		switch {
		case r == FNC1:
			return 1
		case s == SetA:
			return b2i(r < 96)
		case s == SetB:
			return b2i(r >= 32)
		default:
			return 2 * b2i(isDigit(r) && i+1 < len(in) && isDigit(in[i+1]))
		}
	}
	// here returns the cost of encoding in[i] in set k next, staying in it.
	here := func(k, i int) int {
		n := step(sets[k], i)
		if n == 0 || cost[i+n][k] >= inf {
			return inf
		}
		return 1 + cost[i+n][k]
	}
	for i := len(in) - 1; i >= 0; i-- {
		for k := range sets {
			best := here(k, i)
			for j := range sets {
				if j != k {
					best = min(best, 1+here(j, i))
				}
			}
			cost[i][k] = best
		}
	}
	k := 0
	for j := range sets {
		if here(j, 0) < here(k, 0) {
			k = j
		}
	}
	sym := Symbol{start: sets[k]}
	for i := 0; i < len(in); {
		if here(k, i) > cost[i][k] {
			// Switching is cheaper: find to which set.
			for j := range sets {
				if j != k && 1+here(j, i) == cost[i][k] {
					sym.chars = append(sym.chars, char{value: switchValue(sets[j]), set: sets[k], to: sets[j]})
					k = j
					break
				}
			}
		}
		n := step(sets[k], i)
		sym.chars = append(sym.chars, char{value: value(sets[k], in[i:i+n]), set: sets[k], data: in[i : i+n]})
		i += n
	}
	return sym, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }

func switchValue(to Set) int {
	switch to {
	case SetA:
		return valueCodeA
	case SetB:
		return valueCodeB
	}
	return valueCodeC
}

// value is the symbol character value of data (one character, FNC1, or a
// digit pair in set C).
func value(s Set, data []rune) int {
	r := data[0]
	switch {
	case r == FNC1:
		return valueFNC1
	case s == SetC:
		return int(r-'0')*10 + int(data[1]-'0')
	case s == SetA && r < 32:
		return int(r) + 64
	}
	return int(r) - 32
}

// Start returns the code set the symbol starts in.
func (s Symbol) Start() Set { return s.start }

// Values returns the symbol character values: the start character, the
// data and code set changes, and the check character (ISO/IEC 15417, 4.3.4:
// the start value plus each value times its position, modulo 103).
func (s Symbol) Values() []int {
	start := map[Set]int{SetA: valueStartA, SetB: valueStartB, SetC: valueStartC}[s.start]
	v := []int{start}
	sum := start
	for i, c := range s.chars {
		v = append(v, c.value)
		sum += (i + 1) * c.value
	}
	return append(v, sum%103)
}

// Modules returns the symbol's width in modules, without quiet zones:
// 11 for each symbol character and 13 for the stop pattern.
func (s Symbol) Modules() int { return 11*(len(s.chars)+2) + 13 }

// Bars returns the symbol one module per element, true for a bar, from
// the start character's first bar to the stop pattern's last.
func (s Symbol) Bars() []bool {
	bars := make([]bool, 0, s.Modules())
	for _, v := range append(s.Values(), 106) {
		for i, w := range patterns[v] {
			for range w - '0' {
				bars = append(bars, i%2 == 0)
			}
		}
	}
	return bars
}

// ZPL returns the field data (^FD) that makes ZPL II's ^BC in mode N (no
// selected mode) print this symbol: the start character and every code
// set change written out as the invocation codes of the ZPL II Programming
// Guide, ^BC, Table 6 "Code 128 Invocation Characters": >9 >: >; start in
// set A, B, C; >7 >6 >5 change to set A, B, C; >8 is FNC1. Set B data is
// written as is, except '^', '>', '~' and DEL, which are ><, >0, >= and >1
// (Table 6, and the guide's "Subset B is programmed directly as ASCII
// text, except for values greater than 94 decimal and a few special
// characters that must be programmed using the invocation codes: ^ > ~").
// Sets A and C are programmed as pairs of digits, 00 to 99: in set C the
// digits themselves, in set A the character's value.
//
// Mode A (automatic) is not used: the guide does not say how the printer
// picks code sets beyond "a string of four or more numeric digits causes
// an automatic shift to Subset C", so its symbol could differ from Bars.
//
// The result holds no '^' or '~' (the ZPL command prefixes) but may hold
// '_', so it still needs the caller's ^FH escaping.
func (s Symbol) ZPL() string {
	var b strings.Builder
	b.WriteString(map[Set]string{SetA: ">9", SetB: ">:", SetC: ">;"}[s.start])
	for _, c := range s.chars {
		switch {
		case c.data == nil:
			b.WriteString(map[Set]string{SetA: ">7", SetB: ">6", SetC: ">5"}[c.to])
		case c.value == valueFNC1:
			b.WriteString(">8")
		case c.set == SetA:
			fmt.Fprintf(&b, "%02d", c.value)
		case c.set == SetC:
			b.WriteString(string(c.data))
		default:
			switch r := c.data[0]; r {
			case '^':
				b.WriteString("><")
			case '>':
				b.WriteString(">0")
			case '~':
				b.WriteString(">=")
			case 127:
				b.WriteString(">1")
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// String shows the code sets and what each encodes, as in
// "B:THERMO- C:00 C:00 C:01": for reading tests and logs.
func (s Symbol) String() string {
	var parts []string
	for _, c := range s.chars {
		switch {
		case c.data == nil:
			parts = append(parts, "→"+string(c.to))
		case c.value == valueFNC1:
			parts = append(parts, string(c.set)+":FNC1")
		case c.set == SetC:
			parts = append(parts, "C:"+string(c.data))
		default:
			if n := len(parts) - 1; n >= 0 && strings.HasPrefix(parts[n], string(c.set)+":") && !strings.HasSuffix(parts[n], "FNC1") {
				parts[n] += fmt.Sprintf("%c", c.data[0])
				continue
			}
			parts = append(parts, fmt.Sprintf("%c:%c", c.set, c.data[0]))
		}
	}
	return "start " + string(s.start) + " " + strings.Join(parts, " ")
}
