package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/journal"
)

// Devices.

func (s *server) getDevice(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	hw := r.PathValue("hardware_id")
	d, err := s.svc.Device(r.Context(), flasher.HardwareID(hw))
	if err != nil {
		return readErr(p, err, "device", hw)
	}
	if err := s.mayReadOf(r.Context(), p, d.Product, "device", hw); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *server) listDevices(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	product := r.PathValue("code")
	if err := s.mayReadProduct(r.Context(), p, product); err != nil {
		return err
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	devs, next, err := s.svc.DevicePage(r.Context(), product, page)
	if err != nil {
		return err
	}
	return writePage(w, r, devs, next)
}

// The station's calls.

func (s *server) preflight(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	var req jobs.PreflightRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	if _, err := s.callWorkOrder(r.Context(), p, req.WorkOrder, req.Product); err != nil {
		return err
	}
	v, err := s.svc.Preflight(r.Context(), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *server) activate(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	var req dmsapi.ActivateRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	station := req.Station
	if p.Role == dms.RoleStation {
		if station != "" {
			if err := actAs(p, station); err != nil {
				return err
			}
		}
		station = p.Station
	}
	if _, err := s.callWorkOrder(r.Context(), p, req.WorkOrder, req.Product); err != nil {
		return err
	}
	act, err := s.svc.Activate(r.Context(), jobs.ActivateRequest{
		WorkOrder: req.WorkOrder, Product: req.Product, HardwareID: req.HardwareID,
		FirmwareVersion: req.FirmwareVersion, Token: jobs.NewSecret(req.Token),
		PurchaseOrder: req.PurchaseOrder, Station: station,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, act)
}

func (s *server) lock(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	var req jobs.LockRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	wo, err := s.callWorkOrder(r.Context(), p, req.WorkOrder, req.Product)
	if err != nil {
		return err
	}
	if err := s.workedOn(r.Context(), p, wo, req.HardwareID); err != nil {
		return err
	}
	if err := s.svc.Lock(r.Context(), req); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) complete(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	var req jobs.CompleteRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	wo, err := s.callWorkOrder(r.Context(), p, req.WorkOrder, "")
	if err != nil {
		return err
	}
	if err := s.workedOn(r.Context(), p, wo, req.HardwareID); err != nil {
		return err
	}
	if err := s.svc.MarkDone(r.Context(), req.WorkOrder, req.HardwareID); err != nil {
		return err
	}
	return noContent(w)
}

func (s *server) ingest(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	station := r.PathValue("station")
	if err := actAs(p, station); err != nil {
		return err
	}
	var req dmsapi.IngestRequest
	body, err := readBody(w, r, MaxIngestBody, &req)
	if err != nil {
		return err
	}
	if err := checkBatchText(body, req.Events); err != nil {
		return err
	}
	ingest := s.svc.IngestEvents
	if p.Role == dms.RoleStation {
		// A station key reports on its own work orders only.
		ingest = s.svc.IngestStationEvents
	}
	res, err := ingest(r.Context(), station, req.Events)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, dmsapi.IngestResponse{Stored: res.Stored, Duplicates: res.Duplicates, LastSeq: res.LastSeq})
}

// checkBatchText refuses a batch that holds text the DMS does not store
// (dms.CheckJSONText), naming the event at fault by its seq so that the
// station can set that one event aside and send the others.
func checkBatchText(body []byte, events []journal.Event) error {
	var raw struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.Events) != len(events) {
		return dms.CheckJSONText(body)
	}
	for i, e := range raw.Events {
		var fe *dms.FieldError
		if errors.As(dms.CheckJSONText(e), &fe) {
			if events[i].Seq <= 0 {
				return fail422("field %q of event %d of the batch %s, and the event has no sequence number", fe.Field, i+1, fe.Problem)
			}
			fe.Seq = events[i].Seq
			return fe
		}
	}
	return dms.CheckJSONText(body)
}

func fail422(format string, args ...any) error {
	return apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid, format, args...)
}

// The device's call.

// claim activates a device with the activation token in the body: the
// token is its only credential.
func (s *server) claim(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req dmsapi.ClaimRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return apiError(http.StatusUnauthorized, dmsapi.CodeUnauthenticated,
			"a claim needs the activation token in its body (\"token\"): ask your administrator for one")
	}
	act, err := s.svc.Claim(r.Context(), req.Product, jobs.NewSecret(req.Token), req.HardwareID, req.FirmwareVersion, "")
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, act)
}

// QA.

// results are the values of the result filter.
var results = []journal.Result{journal.ResultDone, journal.ResultFailed, journal.ResultInterrupted, journal.ResultInProgress, journal.ResultSkipped}

// eventFilter reads the query's filters, limited to a support key's
// product.
func eventFilter(q url.Values, p dms.Principal, paging bool) (dms.EventFilter, error) {
	allowed := []string{"work_order", "device", "station", "since", "until", "limit", "cursor"}
	if paging {
		allowed = append(allowed, "after_seq")
	} else {
		allowed = append(allowed, "result")
	}
	for name := range q {
		if !slices.Contains(allowed, name) {
			return dms.EventFilter{}, apiError(http.StatusBadRequest, dmsapi.CodeInvalid,
				"%q is not a filter of this call: use %v", name, allowed)
		}
	}
	f := dms.EventFilter{Station: q.Get("station"), WorkOrder: q.Get("work_order"), Device: q.Get("device")}
	for name, t := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			var err error
			if *t, err = time.Parse(time.RFC3339, v); err != nil {
				return f, apiError(http.StatusBadRequest, dmsapi.CodeInvalid,
					"%s=%q is not an RFC 3339 time: write it like 2026-03-01T08:00:00Z", name, v)
			}
		}
	}
	if v := q.Get("after_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return f, apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "after_seq=%q must be a sequence number (0 or more)", v)
		}
		f.AfterSeq = n
	}
	if p.Role == dms.RoleSupport {
		f.Products = []string{p.Product}
	}
	return f, nil
}

func (s *server) flashLogs(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	q := r.URL.Query()
	ef, err := eventFilter(q, p, false)
	if err != nil {
		return err
	}
	f := dms.FlashLogFilter{EventFilter: ef, Result: journal.Result(q.Get("result"))}
	if f.Result != "" && !slices.Contains(results, f.Result) {
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid,
			"result=%q is not a result: use done, failed, interrupted, in_progress or skipped", f.Result)
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	logs, next, err := s.svc.FlashLogPage(r.Context(), f, page)
	if err != nil {
		return err
	}
	return writePage(w, r, logs, next)
}

func (s *server) events(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	f, err := eventFilter(r.URL.Query(), p, true)
	if err != nil {
		return err
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	events, next, err := s.svc.EventPage(r.Context(), f, page)
	if err != nil {
		return err
	}
	return writePage(w, r, events, next)
}
