package sparkplug

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// The Sparkplug B payload is the protobuf message org.eclipse.tahu.protobuf.
// Payload of the specification's sparkplug_b.proto, encoded here by hand:
//
//	Payload:     timestamp=1 (uint64), metrics=2 (Metric), seq=3 (uint64)
//	Metric:      name=1, alias=2, timestamp=3 (uint64), datatype=4 (uint32),
//	             is_historical=5, is_transient=6, is_null=7 (bool),
//	             properties=9 (PropertySet),
//	             int_value=10, long_value=11, float_value=12, double_value=13,
//	             boolean_value=14, string_value=15
//	PropertySet: keys=1 (string), values=2 (PropertyValue)
//	PropertyValue: type=1 (uint32), is_null=2, int_value=3, long_value=4,
//	             float_value=5, double_value=6, boolean_value=7, string_value=8

// DataType is a Sparkplug B metric data type.
type DataType uint32

// The data types edgegw uses (sparkplug_b.proto, enum DataType).
const (
	Int32   DataType = 3
	Int64   DataType = 4
	UInt64  DataType = 8
	Double  DataType = 10
	Boolean DataType = 11
	String  DataType = 12
)

// Metric is one metric of a payload.
type Metric struct {
	Name       string
	Timestamp  uint64 // ms since the epoch; 0 = none
	Type       DataType
	Historical bool
	Null       bool
	Value      any               // int64, uint64, float64, bool or string
	Properties map[string]string // String properties, e.g. "engUnit"
}

// Payload is a Sparkplug B payload.
type Payload struct {
	Timestamp uint64
	Metrics   []Metric
	Seq       uint64
	HasSeq    bool
}

// Encode returns the protobuf bytes of p.
func (p *Payload) Encode() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, p.Timestamp)
	for i := range p.Metrics {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, p.Metrics[i].encode())
	}
	if p.HasSeq {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, p.Seq)
	}
	return b
}

func (m *Metric) encode() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, m.Name)
	if m.Timestamp != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, m.Timestamp)
	}
	b = protowire.AppendTag(b, 4, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(m.Type))
	if m.Historical {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if m.Null || m.Value == nil {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if len(m.Properties) > 0 {
		var ps []byte
		keys := sortedKeys(m.Properties)
		for _, k := range keys {
			ps = protowire.AppendTag(ps, 1, protowire.BytesType)
			ps = protowire.AppendString(ps, k)
		}
		for _, k := range keys {
			var pv []byte
			pv = protowire.AppendTag(pv, 1, protowire.VarintType)
			pv = protowire.AppendVarint(pv, uint64(String))
			pv = protowire.AppendTag(pv, 8, protowire.BytesType)
			pv = protowire.AppendString(pv, m.Properties[k])
			ps = protowire.AppendTag(ps, 2, protowire.BytesType)
			ps = protowire.AppendBytes(ps, pv)
		}
		b = protowire.AppendTag(b, 9, protowire.BytesType)
		b = protowire.AppendBytes(b, ps)
	}
	if m.Null || m.Value == nil {
		return b
	}
	switch v := m.Value.(type) {
	case int64:
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(v))
	case uint64:
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, v)
	case float64:
		b = protowire.AppendTag(b, 13, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	case bool:
		b = protowire.AppendTag(b, 14, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(v))
	case string:
		b = protowire.AppendTag(b, 15, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// Decode reads a payload (commands: NCMD, DCMD). Fields it does not use
// are skipped; a malformed message is an error naming what is wrong.
func Decode(b []byte) (Payload, error) {
	var p Payload
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, fmt.Errorf("sparkplug: payload: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return p, fmt.Errorf("sparkplug: payload timestamp: %w", protowire.ParseError(n))
			}
			p.Timestamp, b = v, b[n:]
		case num == 2 && typ == protowire.BytesType:
			mb, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, fmt.Errorf("sparkplug: payload metric: %w", protowire.ParseError(n))
			}
			m, err := decodeMetric(mb)
			if err != nil {
				return p, err
			}
			p.Metrics, b = append(p.Metrics, m), b[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return p, fmt.Errorf("sparkplug: payload seq: %w", protowire.ParseError(n))
			}
			p.Seq, p.HasSeq, b = v, true, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return p, fmt.Errorf("sparkplug: payload field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return p, nil
}

func decodeMetric(b []byte) (Metric, error) {
	var m Metric
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return m, fmt.Errorf("sparkplug: metric: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.BytesType:
			var s string
			s, n = protowire.ConsumeString(b)
			m.Name = s
		case num == 3 && typ == protowire.VarintType:
			m.Timestamp, n = protowire.ConsumeVarint(b)
		case num == 5 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Historical = v != 0
		case num == 4 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Type = DataType(v)
		case num == 7 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Null = v != 0
		case (num == 10 || num == 11) && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Value = int64(v)
		case num == 13 && typ == protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			m.Value = math.Float64frombits(v)
		case num == 12 && typ == protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			m.Value = float64(math.Float32frombits(v))
		case num == 14 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Value = v != 0
		case num == 15 && typ == protowire.BytesType:
			var s string
			s, n = protowire.ConsumeString(b)
			m.Value = s
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			err = protowire.ParseError(n)
			return m, fmt.Errorf("sparkplug: metric %q field %d: %w", m.Name, num, err)
		}
		b = b[n:]
	}
	if m.Name == "" {
		return m, errors.New("sparkplug: a metric without a name (edgegw does not use aliases)")
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
