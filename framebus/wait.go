package framebus

import "errors"

var errTimedOut = errors.New("wait timed out")
