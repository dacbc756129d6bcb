module github.com/edgegw/edgegw/bench

go 1.26.8

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/edgegw/edgegw v0.0.0
	golang.org/x/sys v0.36.0
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
)

replace github.com/edgegw/edgegw => ../
