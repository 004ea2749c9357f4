#ifndef UMBRA_CSODIUM_SHIM_H
#define UMBRA_CSODIUM_SHIM_H
#include <sodium.h>
#endif
