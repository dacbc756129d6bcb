// Package deadletter keeps the messages an upstream broker refused for good
// (not authorised, topic name invalid, packet too large, …): the bridge
// moves such a message here instead of resending it for ever or dropping it,
// so the messages behind it go on and the refused one can be listed,
// replayed into the outbox once the cause is fixed, or dropped by hand.
//
// # On disk
//
// Dir (data_dir/deadletter, 0700) holds one append-only file, deadletter.log
// (0600), of records: length (4) | CRC32C of body (4) | body, integers
// little endian. A body is an entry (kind 1: id, time, reason code, QoS,
// retain, cause, remote topic, payload) or a removal (kind 2: id, how). Every
// record is fsync'd before Add or Remove returns. Open reads the file,
// cuts a torn tail, and rewrites the file without removed entries (write
// temp, fsync, rename, fsync dir); a record whose checksum fails is skipped
// (the one after it is read), and the damaged file is kept aside
// (deadletter.log.damaged-<unix time>) for the operator; a damaged length
// ends the reading there. The store is bounded by
// MaxBytes: an entry that does not fit is refused with ErrFull and the
// bridge counts and logs it.
//
// # Requests while the gateway runs
//
// The gateway holds the store; `edgegw deadletter replay|drop` asks it by
// writing a request file into Dir/requests (write temp, rename). The gateway
// looks there every second, applies the request and renames the file to
// <name>.done with the result, which the command prints. When the gateway
// is not running, the command opens the outbox and the store itself and
// applies the request at once.
package deadletter
