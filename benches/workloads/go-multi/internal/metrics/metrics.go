// Package metrics keeps request counters and latency histograms and writes them in the
// Prometheus text format.
package metrics

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Buckets are the latency histogram's upper bounds, in seconds.
var Buckets = []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1}

type histogram struct {
	counts []uint64
	sum    float64
	total  uint64
}

// Registry holds every series.
type Registry struct {
	mu         sync.Mutex
	counters   map[string]uint64
	histograms map[string]*histogram
}

// New makes an empty registry.
func New() *Registry {
	return &Registry{counters: map[string]uint64{}, histograms: map[string]*histogram{}}
}

func series(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := name + "{"
	for i, k := range keys {
		if i > 0 {
			out += ","
		}
		out += fmt.Sprintf("%s=%q", k, labels[k])
	}
	return out + "}"
}

// Inc adds one to a counter.
func (r *Registry) Inc(name string, labels map[string]string) {
	r.mu.Lock()
	r.counters[series(name, labels)]++
	r.mu.Unlock()
}

// Observe records a duration in a histogram.
func (r *Registry) Observe(name string, labels map[string]string, d time.Duration) {
	key := series(name, labels)
	seconds := d.Seconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.histograms[key]
	if !ok {
		h = &histogram{counts: make([]uint64, len(Buckets))}
		r.histograms[key] = h
	}
	for i, upper := range Buckets {
		if seconds <= upper {
			h.counts[i]++
		}
	}
	h.sum += seconds
	h.total++
}

// Counter reads a counter (0 when absent).
func (r *Registry) Counter(name string, labels map[string]string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counters[series(name, labels)]
}

// WriteTo writes every series, sorted, in the text exposition format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var written int64
	emit := func(format string, args ...interface{}) error {
		n, err := fmt.Fprintf(w, format, args...)
		written += int64(n)
		return err
	}
	names := make([]string, 0, len(r.counters))
	for k := range r.counters {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if err := emit("%s %d\n", k, r.counters[k]); err != nil {
			return written, err
		}
	}
	names = names[:0]
	for k := range r.histograms {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		h := r.histograms[k]
		for i, upper := range Buckets {
			if err := emit("%s_bucket{le=\"%g\"} %d\n", k, upper, h.counts[i]); err != nil {
				return written, err
			}
		}
		if err := emit("%s_sum %g\n%s_count %d\n", k, h.sum, k, h.total); err != nil {
			return written, err
		}
	}
	return written, nil
}
