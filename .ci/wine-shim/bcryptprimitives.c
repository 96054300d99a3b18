/*
 * Test-only shim for running Windows builds under wine 8 (Debian 12).
 * NEVER shipped with the product: .ci/windows-env.sh builds it with MinGW
 * and copies it into the throwaway wine prefix's system32.
 *
 * Why: Rust's std on Windows (1.78+) imports ProcessPrng from
 * bcryptprimitives.dll for HashMap seeds and random bytes. Wine only gained
 * that DLL in wine 9, so under wine 8 every Rust .exe fails to load.
 *
 * What: export ProcessPrng and forward it to advapi32's RtlGenRandom
 * (exported as SystemFunction036), which wine 8 implements.
 * Real signature: BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData);
 * it is documented to always succeed; we still report failure if wine does.
 */
#include <windows.h>

/* RtlGenRandom; ntsecapi.h declares it only under a macro alias. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* RtlGenRandom takes a 32-bit length: fill in chunks. */
    while (len > 0) {
        ULONG n = len > 0x10000000u ? 0x10000000u : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
