// CVRouterShims is header-only today; this file gives SwiftPM a C source to compile.
#include "CVRouterShims.h"
