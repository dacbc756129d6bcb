// Package tlsdiag names, in one plain sentence, why a connection to an MQTT
// broker over TLS failed, and says what to do about it. Check runs the whole
// path (dial, TLS handshake, MQTT CONNECT, CONNACK) for `edgegw tls-check`;
// Explain turns any error the gateway's bridge meets into the same words.
//
// Concurrency: no shared state. Check and CheckWith block for the whole
// probe (dial, handshake, CONNECT, CONNACK), each step bounded by its
// timeout and all by ctx. Explain and Diagnose do no network I/O; to tell
// some causes apart they read the configured certificate files again, so
// they cost a few file reads, once per failed connection.
package tlsdiag

// Code is a stable name for a cause, for tests, metrics labels and scripts.
type Code string

// The causes tlsdiag names.
const (
	CodeOK                   Code = "ok"
	CodeRefused              Code = "refused"              // nothing listening
	CodeTimeout              Code = "timeout"              // no answer in time
	CodeDNS                  Code = "dns"                  // host name does not resolve
	CodeNetwork              Code = "network"              // other network error
	CodeUnknownCA            Code = "unknown_ca"           // server certificate signed by a CA we do not trust
	CodeNameMismatch         Code = "name_mismatch"        // server certificate does not hold the name we used
	CodeExpired              Code = "expired"              // a certificate's validity ended
	CodeNotYetValid          Code = "not_yet_valid"        // a certificate's validity has not begun
	CodeClientCertRequired   Code = "client_cert_required" // server wants a client certificate, none configured
	CodeClientCertRejected   Code = "client_cert_rejected" // server refused our client certificate
	CodeTLSVersion           Code = "tls_version"          // no TLS version in common
	CodeKeyMismatch          Code = "key_mismatch"         // keyfile is not certfile's key
	CodeKeyPassword          Code = "key_password"         // encrypted key, password missing or wrong
	CodeSameSubject          Code = "ca_leaf_same_subject" // a certificate has the same subject as its CA
	CodeCAFileIsDir          Code = "cafile_is_dir"        // cafile names a directory
	CodeCAPathIsFile         Code = "capath_is_file"       // capath names a file
	CodeFile                 Code = "file"                 // a file is missing or does not hold what it should
	CodePlainPort            Code = "plain_port"           // we speak TLS, the port speaks plain MQTT
	CodeTLSPort              Code = "tls_port"             // we speak plain MQTT, the port speaks TLS
	CodeNotAuthorized        Code = "not_authorized"       // CONNACK 5
	CodeBadCredentials       Code = "bad_credentials"      // CONNACK 4
	CodeIdentifierRejected   Code = "identifier_rejected"  // CONNACK 2
	CodeConnackRefused       Code = "connack_refused"      // CONNACK 1 or 3
	CodeClosedAfterHandshake Code = "closed_after_handshake"
	CodeMQTT5Refused         Code = "mqtt5_refused" // closed on our MQTT 5 CONNECT, answers 3.1.1
	CodeClosed               Code = "closed"        // closed, and Explain cannot tell when
	CodeHandshake            Code = "handshake"     // another TLS failure
	CodeProtocol             Code = "protocol"      // the server answered something that is not MQTT
	CodeConfig               Code = "config"        // the TLS options themselves are invalid
	CodeUnknown              Code = "unknown"
)

// Diagnosis is a cause in words.
type Diagnosis struct {
	Code  Code
	Cause string // one sentence: what is wrong, with the names and dates involved
	Hint  string // what to do about it
}
