// Package api serves the store over HTTP/JSON and logs every mutation before applying it.
package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"example.com/kvd/internal/metrics"
	"example.com/kvd/internal/store"
	"example.com/kvd/internal/version"
	"example.com/kvd/internal/wal"
)

// MaxValue is the largest value a PUT accepts.
const MaxValue = 1 << 20

// Server is the HTTP front of a store.
type Server struct {
	Store   *store.Store
	Log     *wal.Log // may be nil: nothing is logged
	Metrics *metrics.Registry
	mux     *http.ServeMux
}

// New wires the routes.
func New(s *store.Store, log *wal.Log, m *metrics.Registry) *Server {
	srv := &Server{Store: s, Log: log, Metrics: m, mux: http.NewServeMux()}
	srv.mux.HandleFunc("/v1/kv/", srv.kv)
	srv.mux.HandleFunc("/v1/keys", srv.keys)
	srv.mux.HandleFunc("/v1/stats", srv.stats)
	srv.mux.HandleFunc("/metrics", srv.metrics)
	srv.mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version.Banner()})
	})
	return srv
}

// ServeHTTP counts and times every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	route := r.URL.Path
	if strings.HasPrefix(route, "/v1/kv/") {
		route = "/v1/kv/"
	}
	labels := map[string]string{"method": r.Method, "route": route, "status": strconv.Itoa(rec.status)}
	s.Metrics.Inc("kvd_requests_total", labels)
	s.Metrics.Observe("kvd_request_seconds", map[string]string{"route": route}, time.Since(start))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, body interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) kv(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
	if key == "" || len(key) > 512 {
		writeJSON(w, http.StatusBadRequest, errorBody{"a key is 1 to 512 bytes"})
		return
	}
	switch r.Method {
	case http.MethodGet:
		it, err := s.Store.Get(key)
		if errors.Is(err, store.ErrNotFound) {
			writeJSON(w, http.StatusNotFound, errorBody{"no such key"})
			return
		}
		w.Header().Set("ETag", strconv.FormatUint(it.Version, 10))
		writeJSON(w, http.StatusOK, it)
	case http.MethodPut:
		s.put(w, r, key)
	case http.MethodDelete:
		if err := s.Store.Delete(key); err != nil {
			writeJSON(w, http.StatusNotFound, errorBody{"no such key"})
			return
		}
		if s.Log != nil {
			if err := s.Log.Append(wal.Record{Op: wal.OpDelete, Key: key, At: time.Now()}); err != nil {
				writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{"use GET, PUT or DELETE"})
	}
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, key string) {
	value, err := io.ReadAll(io.LimitReader(r.Body, MaxValue+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	if len(value) > MaxValue {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{"values are at most 1 MiB"})
		return
	}
	var ttl time.Duration
	if t := r.URL.Query().Get("ttl"); t != "" {
		if ttl, err = time.ParseDuration(t); err != nil || ttl < 0 {
			writeJSON(w, http.StatusBadRequest, errorBody{"ttl is a duration such as 30s"})
			return
		}
	}
	var ifVersion uint64
	if m := r.Header.Get("If-Match"); m != "" {
		if ifVersion, err = strconv.ParseUint(m, 10, 64); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{"If-Match is a version number"})
			return
		}
	}
	it, err := s.Store.Put(key, value, ttl, ifVersion)
	if errors.Is(err, store.ErrConflict) {
		writeJSON(w, http.StatusPreconditionFailed, errorBody{"the key changed since that version"})
		return
	}
	if s.Log != nil {
		rec := wal.Record{Op: wal.OpPut, Key: key, Value: value, Version: it.Version, Expires: it.Expires, At: it.Modified}
		if err := s.Log.Append(rec); err != nil {
			writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
			return
		}
	}
	w.Header().Set("ETag", strconv.FormatUint(it.Version, 10))
	writeJSON(w, http.StatusOK, it)
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, errorBody{"limit is a number"})
			return
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, map[string][]string{"keys": s.Store.Keys(r.URL.Query().Get("prefix"), limit)})
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	items, bytes := s.Store.Stats()
	body := map[string]interface{}{"items": items, "bytes": bytes, "version": version.Banner()}
	if s.Log != nil {
		body["log_bytes"] = s.Log.Size()
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = s.Metrics.WriteTo(w)
}
