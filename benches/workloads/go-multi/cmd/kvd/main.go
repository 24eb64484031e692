// Command kvd is a small key-value server: an in-memory sharded store, an append-only log
// replayed at start, and an HTTP/JSON API with metrics. `kvd -selftest` exercises it without a
// network and prints what it checked.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"example.com/kvd/internal/api"
	"example.com/kvd/internal/metrics"
	"example.com/kvd/internal/store"
	"example.com/kvd/internal/version"
	"example.com/kvd/internal/wal"
)

func main() {
	addr := flag.String("addr", ":8001", "address to listen on")
	dir := flag.String("data", "/data", "folder for the log")
	shards := flag.Int("shards", 16, "store shards")
	selftest := flag.Bool("selftest", false, "exercise the API in memory and exit")
	flag.Parse()

	if *selftest {
		if err := runSelftest(); err != nil {
			fmt.Fprintln(os.Stderr, "selftest failed:", err)
			os.Exit(1)
		}
		return
	}
	if err := serve(*addr, *dir, *shards); err != nil {
		log.Fatal(err)
	}
}

func open(dir string, shards int) (*store.Store, *wal.Log, error) {
	st := store.New(shards, nil)
	path := filepath.Join(dir, "kvd.log")
	n, err := wal.Replay(path, func(r wal.Record) error {
		switch r.Op {
		case wal.OpPut:
			st.Restore(store.Item{Key: r.Key, Value: r.Value, Version: r.Version, Expires: r.Expires, Modified: r.At})
		case wal.OpDelete:
			_ = st.Delete(r.Key)
		default:
			return fmt.Errorf("unknown op %d", r.Op)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("replaying %s: %w", path, err)
	}
	log.Printf("%s: replayed %d records from %s", version.Banner(), n, path)
	lg, err := wal.Open(path)
	if err != nil {
		return nil, nil, err
	}
	return st, lg, nil
}

func serve(addr, dir string, shards int) error {
	st, lg, err := open(dir, shards)
	if err != nil {
		return err
	}
	defer lg.Close()
	srv := &http.Server{Addr: addr, Handler: api.New(st, lg, metrics.New()), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				st.Sweep()
				_ = lg.Sync()
			}
		}
	}()
	errs := make(chan error, 1)
	go func() { errs <- srv.ListenAndServe() }()
	log.Printf("%s listening on %s", version.Banner(), addr)
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

func runSelftest() error {
	dir, err := os.MkdirTemp("", "kvd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, lg, err := open(dir, 4)
	if err != nil {
		return err
	}
	h := api.New(st, lg, metrics.New())
	do := func(method, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("PUT", "/v1/kv/greeting", []byte("hello"), nil); rec.Code != 200 {
		return fmt.Errorf("PUT: %d %s", rec.Code, rec.Body)
	}
	if rec := do("PUT", "/v1/kv/greeting", []byte("stale"), map[string]string{"If-Match": "99"}); rec.Code != 412 {
		return fmt.Errorf("conditional PUT: %d", rec.Code)
	}
	rec := do("GET", "/v1/kv/greeting", nil, nil)
	var it store.Item
	if err := json.Unmarshal(rec.Body.Bytes(), &it); err != nil || string(it.Value) != "hello" {
		return fmt.Errorf("GET: %d %s", rec.Code, rec.Body)
	}
	if rec := do("DELETE", "/v1/kv/greeting", nil, nil); rec.Code != 204 {
		return fmt.Errorf("DELETE: %d", rec.Code)
	}
	if err := lg.Close(); err != nil {
		return err
	}
	replayed := store.New(1, nil)
	n, err := wal.Replay(filepath.Join(dir, "kvd.log"), func(r wal.Record) error {
		if r.Op == wal.OpPut {
			replayed.Restore(store.Item{Key: r.Key, Value: r.Value, Version: r.Version})
		} else {
			_ = replayed.Delete(r.Key)
		}
		return nil
	})
	if err != nil || n != 2 {
		return fmt.Errorf("replay: %d records, %v", n, err)
	}
	if _, err := replayed.Get("greeting"); err == nil {
		return fmt.Errorf("replay kept a deleted key")
	}
	fmt.Printf("%s: selftest ok (PUT, conditional PUT, GET, DELETE, log replay of %d records)\n", version.Banner(), n)
	return nil
}
