// Package ha announces the gateway and its devices to Home Assistant by MQTT
// discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
// one retained config message per entity under the discovery prefix, the
// gateway as a device with each configured device under it (via_device),
// a sensor per described value, a tag scanner per RFID or Wiegand reader, a
// binary sensor per GPIO input and a switch per GPIO output. It announces
// again when Home Assistant's birth message (<prefix>/status "online")
// arrives, and removes (an empty retained config) what an earlier run
// announced and this one does not, remembered in a file in data_dir.
package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"github.com/edgegw/edgegw/devices"
)

// Device is one configured device as Home Assistant sees it.
type Device struct {
	Name, Type string
	Desc       devices.Description
	// StateTopic is where its readings are, as Home Assistant sees it ("":
	// Home Assistant cannot see them, nothing is announced but a warning).
	StateTopic string
	// CommandTopic is where an output takes "on" and "off", as Home
	// Assistant sees it ("" for none).
	CommandTopic string
	// Availability is its availability topic, as Home Assistant sees it.
	Availability string
}

// Options configure an Announcer.
type Options struct {
	GatewayID string
	Version   string
	// Prefix is the discovery prefix ("homeassistant").
	Prefix string
	// Availability is the gateway's availability topic as Home Assistant
	// sees it.
	Availability string
	Devices      []Device
	// Publish publishes on the local broker (retained, QoS 1).
	Publish func(topic string, payload []byte) error
	// Subscribe subscribes on the local broker.
	Subscribe func(filter string, fn func(payload []byte)) (cancel func(), err error)
	// StateFile remembers the config topics announced, so a device that left
	// the configuration is removed.
	StateFile string
	Logger    *slog.Logger
	// Announced, when set, is called after each announcement with their
	// count so far.
	Announced func(n int)
}

// Announcer publishes the discovery messages.
type Announcer struct {
	o      Options
	birth  chan struct{}
	cancel func()
	wg     sync.WaitGroup
	stop   context.CancelFunc
	mu     sync.Mutex
	count  int // announcements made, for tests and logs
}

// New makes an Announcer; Start publishes.
func New(o Options) *Announcer {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Announcer{o: o, birth: make(chan struct{}, 1)}
}

// Announcements is how many times the configuration was announced.
func (a *Announcer) Announcements() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// Start removes what left the configuration, announces, and re-announces
// on every birth message of Home Assistant until Stop.
func (a *Announcer) Start() error {
	msgs := a.Messages()
	// A broker that cannot take the messages now (an external one not yet
	// up) is no reason to stop: Home Assistant's next birth message brings
	// them again.
	if err := a.removeStale(msgs); err != nil {
		a.o.Logger.Warn("could not remove what left the configuration from Home Assistant", "error", err)
	} else if err := a.announce(msgs); err != nil {
		a.o.Logger.Warn("could not announce to Home Assistant; waiting for its next birth message", "error", err)
	}
	cancel, err := a.o.Subscribe(a.o.Prefix+"/status", func(p []byte) {
		if string(p) != "online" {
			return
		}
		select {
		case a.birth <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("homeassistant: %w", err)
	}
	a.cancel = cancel
	ctx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.birth:
				a.o.Logger.Info("Home Assistant is online; announcing the devices again")
				if err := a.announce(a.Messages()); err != nil {
					a.o.Logger.Warn("announcement failed", "error", err)
				}
			}
		}
	}()
	return nil
}

// Stop ends the birth subscription.
func (a *Announcer) Stop() {
	if a.cancel != nil {
		a.cancel()
	}
	if a.stop != nil {
		a.stop()
	}
	a.wg.Wait()
}

func (a *Announcer) announce(msgs []Message) error {
	for _, m := range msgs {
		if err := a.o.Publish(m.Topic, m.Payload); err != nil {
			return fmt.Errorf("homeassistant: %s: %w", m.Topic, err)
		}
	}
	a.mu.Lock()
	a.count++
	n := a.count
	a.mu.Unlock()
	if a.o.Announced != nil {
		a.o.Announced(n)
	}
	a.o.Logger.Debug("announced to Home Assistant", "messages", len(msgs))
	return nil
}

// removeStale publishes an empty retained config for every topic an
// earlier run announced that this configuration does not, then remembers
// this run's topics.
func (a *Announcer) removeStale(msgs []Message) error {
	now := map[string]bool{}
	topics := make([]string, 0, len(msgs))
	for _, m := range msgs {
		now[m.Topic] = true
		topics = append(topics, m.Topic)
	}
	var before []string
	if src, err := os.ReadFile(a.o.StateFile); err == nil {
		if err := json.Unmarshal(src, &before); err != nil {
			a.o.Logger.Warn("the list of announced entities is unreadable; entities of removed devices may stay in Home Assistant", "file", a.o.StateFile, "error", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("homeassistant: %w", err)
	}
	for _, t := range before {
		if now[t] {
			continue
		}
		if err := a.o.Publish(t, nil); err != nil {
			return fmt.Errorf("homeassistant: removing %s: %w", t, err)
		}
		a.o.Logger.Info("removed from Home Assistant: no longer configured", "config_topic", t)
	}
	sort.Strings(topics)
	b, _ := json.Marshal(topics)
	return writeFile(a.o.StateFile, b)
}

// writeFile replaces path with b: write a temporary file, sync, rename.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("homeassistant: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("homeassistant: %s: %w", filepath.Base(path), err)
	}
	return nil
}

// idChars is what Home Assistant allows in a discovery topic's node and
// object ids.
var badIDChars = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

// ID makes a string fit a discovery topic level and a unique id.
func ID(s string) string { return badIDChars.ReplaceAllString(s, "_") }
