package devices

// ValueType is the type of a Field's Value.
type ValueType int

// Value types, as a Field's Value holds them.
const (
	Float  ValueType = iota // float64
	Int                     // int64
	Bool                    // bool
	String                  // string
)

// Value describes one value a device reports in a Reading's Fields, for
// consumers that must know it before it arrives (Home Assistant discovery,
// Sparkplug births).
type Value struct {
	// Name is the Field's name: the key in the payload's "values".
	Name string
	Type ValueType
	// Unit is the Field's unit, as in the payload ("°C", "%RH").
	Unit string
	// Class is what the value measures, in Home Assistant's device class
	// words ("temperature", "humidity", "pressure", "pm25"); "" for none.
	Class string
	// State is "measurement" for a level or "total_increasing" for a
	// counter; "" for a value that is neither (text, an id).
	State string
}

// Description is what a device reports, known before it reports anything.
type Description struct {
	// Identity is set for readers of tags and cards: Readings carry a UID.
	Identity bool
	// Input is set for a binary input: the Bool value "state" is its
	// (active) state.
	Input bool
	// Output is set for an output driven by commands ("on", "off" on the
	// command topic): the Bool value "state" is its state.
	Output bool
	// Values are the Fields a Reading may carry.
	Values []Value
}

// Describer is implemented by devices that describe their readings.
type Describer interface {
	Describe() Description
}

// unitClass maps a unit to the device class of what it measures, for
// drivers whose values the user names (lines, modbus); "" when a unit does
// not say (°, ms).
var unitClass = map[string]string{
	"°C": "temperature", "°F": "temperature", "K": "temperature",
	"%RH": "humidity",
	"hPa": "atmospheric_pressure", "Pa": "pressure", "kPa": "pressure", "bar": "pressure", "mbar": "pressure",
	"V": "voltage", "mV": "voltage", "A": "current", "mA": "current",
	"W": "power", "kW": "power", "Wh": "energy", "kWh": "energy",
	"Hz": "frequency", "lx": "illuminance", "ppm": "carbon_dioxide",
	"µg/m³": "pm25",
}

// MeasuredValue describes a user-named numeric value by its unit: the
// device class the unit implies and "measurement" ("total_increasing" for
// energy, a meter reading).
func MeasuredValue(name string, typ ValueType, unit string) Value {
	v := Value{Name: name, Type: typ, Unit: unit}
	if typ != Float && typ != Int {
		return v
	}
	v.Class = unitClass[unit]
	v.State = "measurement"
	if v.Class == "energy" {
		v.State = "total_increasing"
	}
	return v
}
