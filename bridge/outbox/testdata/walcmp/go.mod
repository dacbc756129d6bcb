module walcmp

go 1.26.8

require (
	github.com/tidwall/gjson v1.10.2 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.0 // indirect
	github.com/tidwall/tinylru v1.1.0 // indirect
	golang.org/x/sys v0.36.0 // indirect
)

require (
	github.com/edgegw/edgegw v0.0.0
	github.com/tidwall/wal v1.1.8
	go.etcd.io/bbolt v1.4.0
)

replace github.com/edgegw/edgegw => ../../../..
