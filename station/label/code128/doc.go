// Package code128 encodes Code 128 symbols: it picks the code sets (A, B,
// C) that give the fewest symbol characters, and writes the result both as
// bars (for the label's PNG preview) and as ZPL II ^BC field data with the
// code sets spelled out as invocation codes (for the printer), so that the
// printed barcode is, bar for bar, the one in the preview.
//
// It does no I/O. In the pipeline it serves station/label, which lays out
// the device label that the label step prints.
//
// Reference: ISO/IEC 15417:2007 (Code 128 symbology: symbol characters,
// code sets, start, stop and check characters); ZPL II Programming Guide
// (Zebra P1012728), ^BC "Code 128 Subsets" and Table 6 "Code 128
// Invocation Characters".
package code128
