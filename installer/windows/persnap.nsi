; persnap setup for Windows (NSIS 3, Unicode, 64-bit).
; Build from the repository root (installer/package-windows.sh does this):
;   makensis -DVERSION=0.1.0 -DBINDIR=target/x86_64-pc-windows-gnu/release \
;            -DOUTFILE=target/persnap-0.1.0-setup.exe installer/windows/persnap.nsi
; Silent install: persnap-setup.exe /S  (uninstall: Uninstall.exe /S)
Unicode true
Target amd64-unicode
SetCompressor /SOLID lzma
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

!include "MUI2.nsh"
!include "x64.nsh"

Name "${APP} ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$PROGRAMFILES64\${APP}"
InstallDirRegKey HKLM "Software\${APP}" "InstallDir"
!define MUI_ICON "..\..\assets\persnap.ico"
!define MUI_UNICON "..\..\assets\persnap.ico"
!define MUI_ABORTWARNING

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
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

Function .onInit
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "persnap needs 64-bit Windows (Volume Shadow Copy only works from 64-bit programs there)." /SD IDOK
    Abort
  ${EndIf}
  SetRegView 64
FunctionEnd

Section "persnap" SecMain
  SectionIn RO
  SetOutPath "$INSTDIR"
  File "${BINDIR}\persnap.exe"
  File "${BINDIR}\persnap-helper.exe"
  File "..\..\README.md"
  WriteUninstaller "$INSTDIR\Uninstall.exe"
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
  ; No task may be left to run a program that is gone (backups and history stay).
  nsExec::Exec '"$INSTDIR\persnap.exe" schedule remove --all'
  Pop $0
  Delete "$SMPROGRAMS\persnap.lnk"
  Delete "$INSTDIR\persnap.exe"
  Delete "$INSTDIR\persnap-helper.exe"
  Delete "$INSTDIR\README.md"
  Delete "$INSTDIR\Uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKLM "${UNINSTALL_KEY}"
  DeleteRegKey HKLM "Software\${APP}"
  ; Backups and history belong to the user and are never removed.
SectionEnd
