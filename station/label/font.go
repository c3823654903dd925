package label

import (
	"fmt"
	"image"
	"image/draw"
	"math"
	"strings"
	"sync"
	"unicode/utf8"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// The label's text is printed in the printer's font 0 (^A0), which Zebra
// printers ship as CG Triumvirate Bold Condensed, a Helvetica Bold
// Condensed. That font is not ours to embed, so the layout measures, and
// the PNG draws, Go Bold made to stand in for it: scaled so that its
// capitals are as tall as font 0's, and each glyph squeezed to about font
// 0's width. A condensed grotesque narrows capitals most and digits and
// punctuation least, so the squeeze goes by kind of character. The numbers
// are Helvetica Bold Condensed's advance widths summed per kind over
// ASCII, divided by Go Bold's at the same capital height (zebrash's font 0,
// the renderer behind zpl-renderer-js, is one); TestZPLRendererJS checks
// that every line lands where zpl-renderer-js prints it.
const (
	// capHeight is font 0's capital height per dot of ^A0 height.
	capHeight = 0.75
	// ellipsis ends a clipped line. Three dots, not U+2026, which a
	// printer's font may lack.
	ellipsis = "..."
)

// squeeze is the width scale that makes Go Bold's glyph r font 0's width.
func squeeze(r rune) float64 {
	switch {
	case r >= 'A' && r <= 'Z':
		return 0.785
	case r >= 'a' && r <= 'z':
		return 0.805
	case r >= '0' && r <= '9':
		return 0.866
	}
	return 0.88
}

// goBold is the parsed Go Bold font and the height of its capital H per
// point of size. The font is compiled into the binary: failing to parse it
// is a build defect, not a run-time condition.
var goBold = sync.OnceValues(func() (*opentype.Font, float64) {
	f, err := opentype.Parse(gobold.TTF)
	if err != nil {
		panic(fmt.Sprintf("label font: %v", err))
	}
	const ref = 1000
	fc, err := opentype.NewFace(f, &opentype.FaceOptions{Size: ref, DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		panic(fmt.Sprintf("label font: %v", err))
	}
	defer fc.Close()
	b, _, ok := fc.GlyphBounds('H')
	if !ok {
		panic("label font has no H")
	}
	return f, float64(b.Max.Y-b.Min.Y) / 64 / ref
})

// face returns Go Bold at the size whose capitals are capHeight*h tall,
// unhinted so that widths scale with h. The caller closes it.
func face(h int) font.Face {
	f, capPerPt := goBold()
	fc, err := opentype.NewFace(f, &opentype.FaceOptions{Size: capHeight * float64(h) / capPerPt, DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		panic(fmt.Sprintf("label font at %d dots: %v", h, err))
	}
	return fc
}

// textWidth returns the width of text at font height h, in dots.
func textWidth(text string, h int) int {
	fc := face(h)
	defer fc.Close()
	return width(fc, text)
}

// width returns text's width in dots with each glyph squeezed.
func width(fc font.Face, text string) int {
	w := 0.0
	for _, r := range text {
		a, _ := fc.GlyphAdvance(r)
		w += float64(a) / 64 * squeeze(r)
	}
	return int(math.Ceil(w))
}

// clip shortens text, ending it with an ellipsis, until it fits w dots at
// height h. It cuts between runes, never inside one.
func clip(text string, h, w int) string {
	fc := face(h)
	defer fc.Close()
	if width(fc, text) <= w {
		return text
	}
	for text != "" {
		_, n := utf8.DecodeLastRuneInString(text)
		text = text[:len(text)-n]
		if s := strings.TrimRight(text, " ") + ellipsis; width(fc, s) <= w {
			return s
		}
	}
	return ""
}

// drawField draws f's text into img: its capitals' top at f.y, left-aligned
// at f.x or centred in the box, as a printer places an ^FO/^FB field. Each
// glyph is drawn at Go Bold's width and squeezed to font 0's.
func drawField(img *image.Gray, f field) error {
	if f.text == "" {
		return nil
	}
	fc := face(f.h)
	defer fc.Close()
	m := fc.Metrics()
	asc, desc := m.Ascent.Ceil(), m.Descent.Ceil()
	x := float64(f.x)
	if f.center {
		x += float64(f.w-width(fc, f.text)) / 2
	}
	baseline := f.y + int(math.Round(capHeight*float64(f.h)))
	for _, r := range f.text {
		a, _ := fc.GlyphAdvance(r)
		adv, s := float64(a)/64, squeeze(r)
		wide := image.NewAlpha(image.Rect(0, 0, int(math.Ceil(adv))+2, asc+desc))
		d := font.Drawer{Dst: wide, Src: image.Opaque, Face: fc, Dot: fixed.P(1, asc)}
		d.DrawString(string(r))
		narrow := image.NewAlpha(image.Rect(0, 0, int(math.Ceil(float64(wide.Rect.Dx())*s)), asc+desc))
		xdraw.BiLinear.Scale(narrow, narrow.Bounds(), wide, wide.Bounds(), xdraw.Src, nil)
		left := int(math.Round(x - s))
		draw.DrawMask(img, narrow.Rect.Add(image.Pt(left, baseline-asc)), image.Black, image.Point{}, narrow, image.Point{}, draw.Over)
		x += adv * s
	}
	return nil
}
