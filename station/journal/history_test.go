package journal

import (
	"fmt"
	"reflect"
	"testing"
)

// histories groups events by work order and device in the order of
// each group's first event, leaving out events with no device: what the
// pages of Histories add up to.
func histories(events []Event, through int64) []History {
	index := map[[2]string]int{}
	var out []History
	for _, e := range events {
		if e.Device == "" || e.Seq > through {
			continue
		}
		k := [2]string{e.WorkOrder, e.Device}
		i, ok := index[k]
		if !ok {
			i = len(out)
			index[k] = i
			out = append(out, History{WorkOrder: e.WorkOrder, Device: e.Device})
		}
		out[i].Events = append(out[i].Events, e)
	}
	return out
}

// historyKeys names histories as WORK_ORDER/DEVICE:SEQ,SEQ,...
func historyKeys(hs []History) []string {
	var out []string
	for _, h := range hs {
		k := h.WorkOrder + "/" + h.Device + ":"
		for i, e := range h.Events {
			if i > 0 {
				k += ","
			}
			k += fmt.Sprint(e.Seq)
		}
		out = append(out, k)
	}
	return out
}

func TestHistories(t *testing.T) {
	j := openTest(t)
	step := func(wo, dev string) Event {
		return Event{Kind: KindStep, WorkOrder: wo, Slot: "S1", Device: dev, Step: "flash", Status: StatusStarted}
	}
	// Devices interleaved, d1 in two work orders, events without a
	// device between them.
	mustAppend(t, j,
		info("WO-1", "loaded"),
		step("WO-1", "d2"),
		step("WO-1", "d1"),
		step("WO-1", "d2"),
		step("WO-2", "d1"),
		info("WO-2", "loaded"),
		step("WO-1", "d3"),
		step("WO-1", "d1"),
		step("WO-2", "d4"),
		step("WO-1", "d3"),
		step("WO-2", "d1"),
		step("WO-1", "d5"),
	)
	all := allEvents(t, j)
	last, err := j.LastSeq(t.Context())
	if err != nil || last != 12 {
		t.Fatalf("LastSeq() = %d, %v, want 12, nil", last, err)
	}
	tests := []struct {
		name    string
		p       HistoryPage
		through int64
		want    []string
	}{
		{"all", HistoryPage{}, 0, []string{"WO-1/d2:2,4", "WO-1/d1:3,8", "WO-2/d1:5,11", "WO-1/d3:7,10", "WO-2/d4:9", "WO-1/d5:12"}},
		{"through", HistoryPage{Through: 9}, 9, []string{"WO-1/d2:2,4", "WO-1/d1:3,8", "WO-2/d1:5", "WO-1/d3:7", "WO-2/d4:9"}},
		{"work order", HistoryPage{WorkOrder: "WO-2"}, 0, []string{"WO-2/d1:5,11", "WO-2/d4:9"}},
		{"device", HistoryPage{Device: "d1"}, 0, []string{"WO-1/d1:3,8", "WO-2/d1:5,11"}},
		{"both", HistoryPage{WorkOrder: "WO-1", Device: "d1"}, 0, []string{"WO-1/d1:3,8"}},
		{"none", HistoryPage{Device: "d9"}, 0, nil},
	}
	for _, tt := range tests {
		for limit := 1; limit <= 7; limit++ {
			t.Run(fmt.Sprintf("%s/limit=%d", tt.name, limit), func(t *testing.T) {
				p := tt.p
				p.Limit = limit
				var got []History
				for pages := 0; ; pages++ {
					if pages > len(all) {
						t.Fatal("the pages do not end")
					}
					page, err := j.Histories(t.Context(), p)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > limit {
						t.Fatalf("page of %d histories, limit %d", len(page), limit)
					}
					got = append(got, page...)
					if len(page) < limit {
						break
					}
					p.After = page[len(page)-1].Events[0].Seq
				}
				if keys := historyKeys(got); !reflect.DeepEqual(keys, tt.want) {
					t.Errorf("Histories(%+v) pages = %q, want %q", tt.p, keys, tt.want)
				}
				if tt.p.WorkOrder == "" && tt.p.Device == "" {
					through := tt.through
					if through == 0 {
						through = last
					}
					if want := histories(all, through); !reflect.DeepEqual(got, want) {
						t.Errorf("Histories(%+v) events differ from Events grouped:\ngot  %+v\nwant %+v", tt.p, got, want)
					}
				}
			})
		}
	}
	if _, err := j.Histories(t.Context(), HistoryPage{}); err == nil {
		t.Error("Histories with limit 0 = nil error, want refused")
	}
}
