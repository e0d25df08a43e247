#include "events/json.h"
