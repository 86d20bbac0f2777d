; persnap setup for Windows (NSIS 3, Unicode, 64-bit).
; Build from the repository root (installer/package-windows.sh does this):
;   makensis -DVERSION=0.1.0 -DBINDIR=target/x86_64-pc-windows-gnu/release \
;            -DOUTFILE=target/persnap-0.1.0-setup.exe installer/windows/persnap.nsi
; Silent install: persnap-setup.exe /S  (uninstall: Uninstall.exe /S)
; Exit code 2: nothing was changed, because persnap was running, or its
; scheduled backups could not be removed (uninstall), or an earlier persnap
; is installed in another folder (install).
; Signed (Authenticode) when installer/package-windows.sh passes
; -DSIGN_CMD=<a command that signs the file given to it in place>: the
; uninstaller and this setup program are signed as they are made.
Unicode true
Target amd64-unicode
;  -DCOMPRESSOR=zlib: quicker, larger (the tests' unoptimized build).
!ifdef COMPRESSOR
SetCompressor ${COMPRESSOR}
!else
SetCompressor /SOLID lzma
!endif
RequestExecutionLevel admin
ManifestSupportedOS all

!ifndef VERSION
  !error "pass -DVERSION=x.y.z"
!endif
!ifndef BINDIR
  !define BINDIR "..\..\target\x86_64-pc-windows-gnu\release"
!endif
!ifndef OUTFILE
  !define OUTFILE "persnap-${VERSION}-setup.exe"
!endif

!define APP "persnap"
!define PUBLISHER "persnap"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\persnap"
!define EVENT_SOURCE_KEY "SYSTEM\CurrentControlSet\Services\EventLog\Application\persnap"

!include "MUI2.nsh"
!include "x64.nsh"
!include "LogicLib.nsh"

!ifdef SIGN_CMD
  ; Sign the uninstaller before it is packed into the setup program (NSIS
  ; 3.08 and later), then the setup program itself; a failure stops the build.
  !uninstfinalize '"${SIGN_CMD}" "%1"' = 0
  !finalize '"${SIGN_CMD}" "%1"' = 0
!endif

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
; Always Program Files, which only administrators may change: a folder
; elsewhere (under C:\ or on a data drive) lets every signed-in user modify
; what is in it, so any user could replace persnap.exe, which scheduled
; backups run as SYSTEM, or the helper an administrator approves. There is
; no folder page, and .onInit puts back this folder over a /D= option.
InstallDir "$PROGRAMFILES64\${APP}"
!define MUI_ICON "..\..\assets\persnap.ico"
!define MUI_UNICON "..\..\assets\persnap.ico"
!define MUI_ABORTWARNING

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_INSTFILES
; "Run persnap" on the finish page starts the app as the person at the
; desktop, not elevated like this setup program: through the desktop's own
; shell (explorer.exe hands the start to the running shell), so its
; settings and history go to that person's profile and its backups ask for
; administrator rights only when they need them.
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Run persnap"
!define MUI_FINISHPAGE_RUN_FUNCTION RunAppUnelevated
!insertmacro MUI_PAGE_FINISH

Function RunAppUnelevated
  Exec '"$WINDIR\explorer.exe" "$INSTDIR\persnap.exe"'
FunctionEnd
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APP}"
VIAddVersionKey "FileDescription" "persnap setup"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "LegalCopyright" "persnap authors"

; What the uninstaller says it leaves behind (SetShellVarContext all:
; $APPDATA is then ProgramData, normally C:\ProgramData).
!define KEPT "Your backups were kept, and so were persnap's settings and history in $APPDATA\${APP} and in each user's AppData\Roaming\${APP} folder. Delete those folders yourself if you no longer need them."

Var RunningProgram

; Running persnap programs, for the setup program and the uninstaller.
!macro RUNNING_FUNCTIONS un
; Sets $RunningProgram to the name of a running persnap.exe or
; persnap-helper.exe, whoever runs it, or to "" when none runs. It asks
; Windows for the list of processes itself rather than reading what
; tasklist prints, which is translated (and empty under wine, where the
; tests run). If Windows cannot give the list, it finds none, and replacing
; a running program then fails with NSIS's own message.
Function ${un}FindRunningPersnap
  Push $0
  Push $1
  Push $2
  Push $3
  Push $4
  StrCpy $RunningProgram ""
  ; TH32CS_SNAPPROCESS = 2; a failure returns INVALID_HANDLE_VALUE (-1).
  System::Call 'kernel32::CreateToolhelp32Snapshot(i 2, i 0) p .r0'
  ${If} $0 P<> -1
    ; A PROCESSENTRY32W: 568 bytes in 64-bit Windows, its size first and
    ; the program's file name (260 UTF-16 characters) at byte 44.
    System::Alloc 568
    Pop $1
    System::Call '*$1(i 568)'
    IntPtrOp $3 $1 + 44
    System::Call 'kernel32::Process32FirstW(p r0, p r1) i .r2'
    ${DoWhile} $2 <> 0
      System::Call '*$3(&w260 .r4)'
      ; == compares without regard to case, as Windows names files.
      ${If} $4 == "persnap.exe"
      ${OrIf} $4 == "persnap-helper.exe"
        StrCpy $RunningProgram $4
        ${ExitDo}
      ${EndIf}
      System::Call 'kernel32::Process32NextW(p r0, p r1) i .r2'
    ${Loop}
    System::Free $1
    System::Call 'kernel32::CloseHandle(p r0)'
  ${EndIf}
  Pop $4
  Pop $3
  Pop $2
  Pop $1
  Pop $0
FunctionEnd

; Waits for persnap to stop before its files are replaced or removed; never
; ends it: it may be in the middle of a backup with a shadow copy open (a
; scheduled backup shows up as a persnap.exe too). Cancel, and silent mode,
; stop the setup program (or uninstaller) with exit code 2, nothing changed.
Function ${un}WaitUntilPersnapStopped
  ${Do}
    Call ${un}FindRunningPersnap
    ${If} $RunningProgram == ""
      ${ExitDo}
    ${EndIf}
    DetailPrint "persnap is running ($RunningProgram)."
    MessageBox MB_RETRYCANCEL|MB_ICONEXCLAMATION "persnap is running (a backup may be in progress). Close persnap, or wait for the backup to finish, then press Retry." /SD IDCANCEL IDRETRY retry
    SetErrorLevel 2
    Abort "persnap is running: nothing was changed."
    retry:
  ${Loop}
FunctionEnd
!macroend
!insertmacro RUNNING_FUNCTIONS ""
!insertmacro RUNNING_FUNCTIONS "un."

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "persnap needs 64-bit Windows (Volume Shadow Copy only works from 64-bit programs there)." /SD IDOK
    Abort
  ${EndIf}
  SetRegView 64
  ; Over any /D= option: see InstallDir.
  StrCpy $INSTDIR "$PROGRAMFILES64\${APP}"
  ; An earlier persnap could be installed in another folder. Installing
  ; here would leave it there, and its scheduled backups would keep running
  ; it from a folder other users may be able to change.
  ReadRegStr $0 HKLM "Software\${APP}" "InstallDir"
  ${If} $0 != ""
  ${AndIf} $0 != $INSTDIR
  ${AndIf} ${FileExists} "$0\persnap.exe"
    MessageBox MB_ICONSTOP "An earlier persnap is installed in $0. Uninstall it first (Settings, Apps), then run this setup again. persnap now always goes into $INSTDIR, which only administrators can change." /SD IDOK
    SetErrorLevel 2
    Abort
  ${EndIf}
  Call WaitUntilPersnapStopped
FunctionEnd

Section "persnap" SecMain
  SectionIn RO
  ; Again here: a scheduled backup may have started since the setup began.
  Call WaitUntilPersnapStopped
  SetOutPath "$INSTDIR"
  File "${BINDIR}\persnap.exe"
  File "${BINDIR}\persnap-helper.exe"
  ; The Event Log's message file: Event Viewer may hold it open, and the
  ; old one has the same messages, so a busy one is left for the next time.
  SetOverwrite try
  File "${BINDIR}\persnap-events.dll"
  SetOverwrite on
  File "..\..\README.md"
  WriteUninstaller "$INSTDIR\Uninstall.exe"
  ; The Windows Event Log's source "persnap" (Application log; event ids in
  ; docs/MONITORING.md), with its message file.
  WriteRegExpandStr HKLM "${EVENT_SOURCE_KEY}" "EventMessageFile" "$INSTDIR\persnap-events.dll"
  WriteRegDWORD HKLM "${EVENT_SOURCE_KEY}" "TypesSupported" 7
  SetShellVarContext all
  CreateShortCut "$SMPROGRAMS\persnap.lnk" "$INSTDIR\persnap.exe" "" "$INSTDIR\persnap.exe" 0
  WriteRegStr HKLM "Software\${APP}" "InstallDir" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayName" "${APP}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\persnap.exe"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKLM "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\Uninstall.exe"'
  WriteRegStr HKLM "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\Uninstall.exe" /S'
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKLM "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Uninstall"
  SetRegView 64
  SetShellVarContext all
  Call un.WaitUntilPersnapStopped
  ; No task may be left to run a program that is gone (backups and history
  ; stay). If they cannot all be removed, uninstall nothing: persnap is
  ; still there to list and remove them.
  ${If} ${FileExists} "$INSTDIR\persnap.exe"
    nsExec::ExecToLog '"$INSTDIR\persnap.exe" schedule remove --all'
    Pop $0
    ${If} $0 != "0"
      MessageBox MB_ICONSTOP "persnap could not remove its scheduled backups, so nothing was uninstalled. See them with 'persnap schedule list'; remove them with 'persnap schedule remove --all' in a command prompt run as administrator, then uninstall again." /SD IDOK
      SetErrorLevel 2
      Abort "persnap could not remove its scheduled backups: nothing was uninstalled."
    ${EndIf}
  ${Else}
    DetailPrint "persnap.exe is missing, so its scheduled backups (if any) could not be removed."
  ${EndIf}
  Delete "$SMPROGRAMS\persnap.lnk"
  Delete "$INSTDIR\persnap.exe"
  Delete "$INSTDIR\persnap-helper.exe"
  ; Event Viewer may hold it open: then it goes at the next restart.
  Delete /REBOOTOK "$INSTDIR\persnap-events.dll"
  Delete "$INSTDIR\README.md"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKLM "${UNINSTALL_KEY}"
  DeleteRegKey HKLM "Software\${APP}"
  ; persnap's events already in the log stay; without the message file
  ; Event Viewer shows their text after a note that it has none.
  DeleteRegKey HKLM "${EVENT_SOURCE_KEY}"
  ; Backups and history belong to the user and are never removed.
  DetailPrint "persnap was removed. ${KEPT}"
SectionEnd

Function un.onUninstSuccess
  SetShellVarContext all
  MessageBox MB_ICONINFORMATION "persnap was removed.$\r$\n$\r$\n${KEPT}" /SD IDOK
FunctionEnd
