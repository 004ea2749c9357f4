// libFuzzer's driver entry point (compiler-rt FuzzerInterface.h). Declared here because the Swift
// fuzz targets start libFuzzer themselves; see Fuzz/Support/FuzzSupport/LibFuzzer.swift for why.
#ifndef UMBRA_CLIBFUZZER_H
#define UMBRA_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));

#endif
