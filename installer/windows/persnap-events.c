/* persnap-events.dll: the message file of the Windows Event Log source
 * "persnap" (registered by the setup program). It holds no code but this
 * entry point: its message table (made by installer/package-windows.sh
 * with windmc) turns every event id from 1 to 1000 into the event's own
 * text, so that Event Viewer shows persnap's plain message, and new kinds
 * of events never need a new file. */
#include <windows.h>

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    (void)reason;
    (void)reserved;
    return TRUE;
}
