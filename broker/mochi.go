package broker

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/broker/auth"
)

// This file is the one place where the broker reaches past mochi's
// documented server API (Server.Publish, Subscribe, Unsubscribe, AddHook,
// AddListener, Serve, Close; the hooks' and listeners' interfaces) into its
// internals. Everything below was read off mochiVersion's source;
// TestMochiAdapter (mochi_test.go) fails when an upgrade changes any of it.
// What the broker relies on:
//
//   - Server internals: NewClient for in-process clients, InjectPacket,
//     DisconnectClient, Topics.Subscribers and its three maps, the Info
//     counters, Capabilities.MaximumPacketSize (refused from the fixed
//     header with packets.ErrPacketTooLarge, returned by the listener's
//     establish function).
//   - Client internals: the lock mochi holds while it writes to the
//     connection, Closed, Net.Conn (the connection our listener handed to
//     establish, so the acker writes through the guardConn and the access
//     hook finds the TLS state on it), Net.Inline, Net.Remote, ID,
//     Properties.Username (which the access hook sets to the certificate's
//     CN under use_identity_as_username), and State.Inflight for a
//     held-back QoS 2 PUBREC; a CONNECT's credentials (packets.Packet's
//     Connect fields).
//   - Behaviour the code in conn.go and mochilog.go is built on: every byte
//     mochi sends goes through Conn.Write, under the client's lock (so
//     Write must not block); mochi calls Conn.SetDeadline only once it has
//     read a valid CONNECT, and again before each packet; it calls Close
//     on the connection when the client ends; an OnPublish hook returning
//     packets.ErrRejectPacket stops mochi from acknowledging or routing the
//     message; an injected QoS 0 PUBLISH must carry no packet id; its log
//     lines carry whole packets (payloads, a CONNECT's password) or a will
//     only under the attribute keys isMochiDumpKey names (for "pk":
//     TestMochiLogsNoPacketDumps).

// mochiVersion is the release of github.com/mochi-mqtt/server/v2 this
// adapter was written against. TestMochiVersion fails when go.mod names
// another: read the upgrade's changes to the internals listed above, rerun
// TestMochiAdapter, then move this constant.
const mochiVersion = "v2.7.9"

// isMochiDumpKey reports whether mochi logs a whole packet or a will (with
// its payload) under the attribute key k: "pk" (error processing packet, at
// Warn), "packet" (hook errors, failed writes), "will" (will hook errors).
func isMochiDumpKey(k string) bool { return k == "pk" || k == "packet" || k == "will" }

// errMochiPacketTooLarge is what mochi's establish returns for a packet over
// Capabilities.MaximumPacketSize.
var errMochiPacketTooLarge = packets.ErrPacketTooLarge

// errMochiReject, returned by an OnPublish hook, makes mochi drop the
// PUBLISH without acknowledging or routing it. It is an error value made
// once: returning the packets.Code itself boxed it, an allocation per
// message.
var errMochiReject error = packets.ErrRejectPacket

// sysInterval is how often, in seconds, mochi republishes its $SYS topics
// (20 retained messages, after a stop-the-world runtime.ReadMemStats):
// Mosquitto's default sys_interval, rather than mochi's every second, which
// was most of an idle gateway's CPU and kept its heap growing.
const sysInterval = 10

// newMochiServer builds the embedded server: in-process clients on, packets
// over maxPacket refused from their fixed header, logging through h.
//
// mochi gives every client, in-process ones too, an outbound queue of
// Capabilities.MaximumClientWritesPending packet pointers (8,192: 64 KiB),
// made when the client is; an in-process client never uses it (mochi's
// publishToClient returns before the queue for a client without a
// connection). So the server is built with a queue of 0 for its own
// in-process client, ours are made the same way (newInlineClient), and
// openNetworkQueues puts mochi's default back before the first network
// client can connect: 256 KiB less for the four in-process clients.
func newMochiServer(maxPacket int, h slog.Handler) *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(maxPacket)
	caps.MaximumClientWritesPending = 0
	return mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		// Publishers send bursts of small packets: read them 32 KiB at a
		// time rather than mochi's 2 KiB (fewer syscalls per message).
		ClientNetReadBufferSize:  32 << 10,
		ClientNetWriteBufferSize: 32 << 10,
		SysTopicResendInterval:   sysInterval,
		Logger:                   slog.New(h),
	})
}

// newInlineClient returns an in-process client that can inject packets; it
// bypasses the ACL. It is made before openNetworkQueues (broker.New), so
// without mochi's unused outbound queue.
func newInlineClient(srv *mqtt.Server, id string) *mqtt.Client {
	return srv.NewClient(nil, mqtt.LocalListener, id, true)
}

// openNetworkQueues gives every client made from now on (the network
// clients) mochi's default outbound queue: the packets a slow subscriber
// may have pending before mochi drops what it sends it.
func openNetworkQueues(srv *mqtt.Server) {
	srv.Options.Capabilities.MaximumClientWritesPending = mqtt.NewDefaultServerCapabilities().MaximumClientWritesPending
}

// inject runs pk through mochi's packet handling as if cl had sent it.
func inject(srv *mqtt.Server, cl *mqtt.Client, pk packets.Packet) error {
	return srv.InjectPacket(cl, pk)
}

// injectPublish routes m to local subscribers as a PUBLISH from cl.
func injectPublish(srv *mqtt.Server, cl *mqtt.Client, m Message) error {
	return inject(srv, cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(m.QoS), // none for QoS 0: mochi refuses a QoS 0 PUBLISH with one
		Created:     time.Now().Unix(),
	})
}

// disconnectQuota disconnects cl; an MQTT 5 client is told "quota
// exceeded" (0x97) first.
func disconnectQuota(srv *mqtt.Server, cl *mqtt.Client) error {
	return srv.DisconnectClient(cl, packets.ErrQuotaExceeded)
}

// clientID is the client's id.
func clientID(cl *mqtt.Client) string { return cl.ID }

// isInline reports whether cl is an in-process client (the gateway's own).
func isInline(cl *mqtt.Client) bool { return cl.Net.Inline }

// clientRemote is the client's remote address ("" for in-process clients).
func clientRemote(cl *mqtt.Client) string { return cl.Net.Remote }

// clientConn is the connection the listener handed to mochi for cl (a
// guardConn), or nil for an in-process client.
func clientConn(cl *mqtt.Client) net.Conn { return cl.Net.Conn }

// clientUsername is the user name the ACL knows the client by.
func clientUsername(cl *mqtt.Client) string { return string(cl.Properties.Username) }

// setClientUsername replaces the client's user name (with a certificate's
// CN).
func setClientUsername(cl *mqtt.Client, user string) { cl.Properties.Username = []byte(user) }

// connectingClient is what the access policy is told about a client whose
// CONNECT pk mochi has read.
func connectingClient(cl *mqtt.Client, pk packets.Packet) auth.Client {
	c := auth.Client{
		ID: cl.ID, Remote: cl.Net.Remote,
		HasUsername: pk.Connect.UsernameFlag, Username: pk.Connect.Username,
		HasPassword: pk.Connect.PasswordFlag, Password: pk.Connect.Password,
	}
	if tc, ok := cl.Net.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		st := tc.ConnectionState()
		c.TLS = &st
	}
	return c
}

// writeRaw writes encoded packets to cl under the client's lock, as mochi's
// WritePacket does, so they never interleave with mochi's own writes. It
// bypasses mochi's write buffer, its hooks' OnPacketSent and its byte
// counters. The connection is a guardConn, so the write only queues.
func writeRaw(cl *mqtt.Client, p []byte) error {
	cl.Lock()
	defer cl.Unlock()
	if cl.Closed() || cl.Net.Conn == nil {
		return net.ErrClosed
	}
	_, err := cl.Net.Conn.Write(p)
	return err
}

// expectPubrel records that a PUBREC for packet id went to cl, so the
// PUBREL that follows finds it and gets its PUBCOMP. mochi's PUBREL handling
// takes one off its in-flight count for it: add it here, as mochi does when
// it sends a PUBREC itself.
func expectPubrel(srv *mqtt.Server, cl *mqtt.Client, id uint16) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id, Created: time.Now().Unix()}
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&srv.Info.Inflight, 1)
	}
}

// hasSubscribers reports whether any network client, shared subscription or
// in-process handler is subscribed to topic.
func hasSubscribers(srv *mqtt.Server, topic string) bool {
	s := srv.Topics.Subscribers(topic)
	return len(s.Subscriptions) > 0 || len(s.InlineSubscriptions) > 0 || len(s.Shared) > 0
}

// mochiStats are the counters mochi keeps.
type mochiStats struct {
	clients, received, sent, retained, subscriptions, inflight int64
}

func readMochiStats(srv *mqtt.Server) mochiStats {
	i := srv.Info
	return mochiStats{
		clients:       atomic.LoadInt64(&i.ClientsConnected),
		received:      atomic.LoadInt64(&i.MessagesReceived),
		sent:          atomic.LoadInt64(&i.MessagesSent),
		retained:      atomic.LoadInt64(&i.Retained),
		subscriptions: atomic.LoadInt64(&i.Subscriptions),
		inflight:      atomic.LoadInt64(&i.Inflight),
	}
}
