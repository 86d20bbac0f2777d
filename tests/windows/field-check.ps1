#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    persnap field check: proves on a real Windows machine what the tests under wine cannot.

.DESCRIPTION
    Run it once, elevated, in Windows PowerShell 5.1 (64-bit) on a Windows 10/11 or
    Server 2016+ test machine, with a copy of the persnap release. It makes a live
    SQLite store (persnap-loadgen), backs it up through persnap's command line and
    through scheduled tasks (as SYSTEM and, with -RunAsAccount, as a named account),
    into a folder and into a local repository, restores, holds a file of a new backup
    open as Defender does, restricts a store to a service account, restores over a
    store whose file gives that account an entry of its own, and watches vssadmin
    before, during and after. With -SetupExe it also installs and uninstalls the
    setup program.

    It prints one line per check,  PASS|FAIL|SKIP|MANUAL  <id>  <what>  (<detail>),
    then a SUMMARY line, and writes everything to <WorkDir>\field-check.log.
    Exit code 0 only when no check failed. Everything it makes goes into -WorkDir and
    is removed at the end (except the log) unless -Keep; the local account
    persnap-fc-svc it makes for checks 9 and 17 is removed too. The only schedules it
    makes, and the only ones it ever removes, are \persnap\fc-system, fc-system-repo,
    fc-runas, fc-runas-repo and fc-uninstall; the only databases it protects, and the
    only ones it ever unprotects, are fc-live (check 14) and fc-acl (check 17).

.PARAMETER PersnapDir
    Folder with persnap.exe and persnap-helper.exe. Default: the installed
    "$env:ProgramFiles\persnap" (after -SetupExe installed it), else this script's folder.
.PARAMETER WorkDir
    A new or empty folder on a fixed NTFS disk. Default: $env:SystemDrive\persnap-field-check-<time>.
.PARAMETER LoadgenExe
    persnap-loadgen.exe (target\x86_64-pc-windows-gnu\release of a build; the setup does
    not ship it). Default: next to this script, else in PersnapDir. Without it the checks
    that need a live store are skipped.
.PARAMETER RunAsAccount
    DOMAIN\user or COMPUTERNAME\user, an administrator, for the --run-as checks (skipped
    without it). Task Scheduler is given the name as written: prefer COMPUTERNAME\user to .\user.
.PARAMETER RunAsPassword
    Its password as a SecureString; asked for with Get-Credential when not given.
.PARAMETER SetupExe
    persnap-<version>-setup.exe: installs it silently first and uninstalls it at the end.
.PARAMETER Keep
    Keep WorkDir and the test account's history folders for inspection.

.EXAMPLE
    powershell.exe -ExecutionPolicy Bypass -File .\field-check.ps1 -SetupExe .\persnap-0.1.0-setup.exe -RunAsAccount TESTVM\fcadmin
#>
[CmdletBinding()]
param(
    [string]$PersnapDir,
    [string]$WorkDir,
    [string]$LoadgenExe,
    [string]$RunAsAccount,
    [System.Security.SecureString]$RunAsPassword,
    [string]$SetupExe,
    [switch]$Keep
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'

# 32-bit PowerShell on 64-bit Windows sees Program Files (x86), a redirected registry,
# no LocalAccounts module, and its vssadmin refuses to run: stop before anything.
if (-not [Environment]::Is64BitProcess) {
    Write-Host 'Run this in the 64-bit Windows PowerShell (C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe).'
    exit 2
}

$Stamp = Get-Date -Format 'yyyyMMdd-HHmmss'
$RunStart = Get-Date
$Here = $PSScriptRoot
if (-not $Here) { $Here = (Get-Location).Path }
$Sys32 = Join-Path $env:SystemRoot 'System32'
$Vssadmin = Join-Path $Sys32 'vssadmin.exe'
$Schtasks = Join-Path $Sys32 'schtasks.exe'
$Icacls = Join-Path $Sys32 'icacls.exe'
# SHGetFolderPath, not %ProgramData%: the environment can be steered by a user.
$PersnapData = Join-Path ([Environment]::GetFolderPath('CommonApplicationData')) 'persnap'
$InstalledDir = Join-Path $env:ProgramFiles 'persnap'
$WasInstalled = Test-Path -LiteralPath (Join-Path $InstalledDir 'persnap.exe')
$SvcName = 'persnap-fc-svc'
# The schedules made here, by name: only these are ever removed (with their histories),
# never another schedule of this machine's, whatever its name.
$FcNames = @('fc-system', 'fc-system-repo', 'fc-runas', 'fc-runas-repo', 'fc-uninstall')
# The databases protected here (persnap database add), by name: the clean-up unprotects
# those this run protected ($S['Db-<name>']), never another database of this machine's.
$FcDatabases = @('fc-live', 'fc-acl')
$SidSystem = 'S-1-5-18'
$SidAdmins = 'S-1-5-32-544'
# Who must never be able to change persnap's programs or folders.
$BroadSids = @{ 'S-1-1-0' = 'Everyone'; 'S-1-5-11' = 'Authenticated Users'; 'S-1-5-32-545' = 'Users'; 'S-1-5-4' = 'INTERACTIVE' }
# FileSystemRights bits that let someone change, replace or re-permission an object:
# write/append data (= add file/subfolder), write EA, delete child, write attributes,
# delete, write DAC, write owner, GENERIC_ALL, GENERIC_WRITE.
$WriteRights = 0x2 -bor 0x4 -bor 0x10 -bor 0x40 -bor 0x100 -bor 0x10000 -bor 0x40000 -bor 0x80000 -bor 0x10000000 -bor 0x40000000
# A daily time 12 hours away: no task made here fires by itself while the checks run
# (one that did would make a backup of ours exit 7, "another run is in the way").
# InvariantCulture: in a custom format ':' is the culture's time separator otherwise.
$SchedAt = (Get-Date).AddHours(12).ToString('HH:mm', [Globalization.CultureInfo]::InvariantCulture)

$S = @{}                                              # what the checks hand on to later ones
$Results = New-Object System.Collections.ArrayList
$Made = New-Object System.Collections.ArrayList      # schedules made here, for check 6e

# ---------------------------------------------------------------- helpers

function Write-Row([string]$Status, [string]$Id, [string]$What, [string]$Detail) {
    $line = '{0,-7} {1,-4} {2}' -f $Status, $Id, $What
    if ($Detail) { $line += '  (' + (($Detail -replace '\s*[\r\n]+\s*', ' | ').Trim()) + ')' }
    $colors = @{ PASS = 'Green'; FAIL = 'Red'; SKIP = 'Yellow'; MANUAL = 'Cyan' }
    Write-Host $line -ForegroundColor $colors[$Status]
    [void]$Results.Add([pscustomobject]@{ Status = $Status; Id = $Id })
}

function Skip-Check([string]$Why) { throw ('SKIP: ' + $Why) }

# A check's script block returns its detail (PASS), throws (FAIL), or calls Skip-Check.
# One failing check never stops the others.
function Invoke-Check([string]$Id, [string]$What, [scriptblock]$Script) {
    try {
        $out = @(& $Script)
        Write-Row 'PASS' $Id $What ((@($out | ForEach-Object { "$_" })) -join '; ')
    } catch {
        $message = $_.Exception.Message
        if ($message.StartsWith('SKIP: ')) { Write-Row 'SKIP' $Id $What $message.Substring(6) }
        else { Write-Row 'FAIL' $Id $What $message }
    }
}

function Need([string]$Key, [string]$Why) { if (-not $S[$Key]) { Skip-Check $Why } }

function Get-Prop($Object, [string]$Name) {
    if ($null -eq $Object) { return $null }
    $p = $Object.PSObject.Properties[$Name]
    if ($p) { return $p.Value }
    return $null
}

# Runs a program and returns its exit code and output lines (stdout and stderr in order).
# Windows PowerShell turns each stderr line into an ErrorRecord under 2>&1, and with
# $ErrorActionPreference 'Stop' the first one would throw (persnap writes its progress
# to stderr), so the preference is relaxed inside this function only.
function Invoke-Native([string]$FilePath, [string[]]$Arguments, [string]$InputText) {
    $ErrorActionPreference = 'Continue'
    try {
        if ($PSBoundParameters.ContainsKey('InputText')) {
            # Piped to the program's stdin with $OutputEncoding (UTF-8, set below) and a newline.
            $items = @($InputText | & $FilePath @Arguments 2>&1)
        } else {
            $items = @(& $FilePath @Arguments 2>&1)
        }
        $code = $LASTEXITCODE
    } catch {
        # A program that cannot start (missing, or blocked by Smart App Control or
        # another application control policy) ends up here, not in $LASTEXITCODE.
        $why = 'could not run ' + $FilePath + ': ' + $_.Exception.Message
        return [pscustomobject]@{ ExitCode = -1; Lines = @($why); Out = @(); Text = $why }
    }
    $lines = New-Object System.Collections.Generic.List[string]
    $out = New-Object System.Collections.Generic.List[string]
    foreach ($item in $items) {
        $text = [string]$item
        if ($item -is [System.Management.Automation.ErrorRecord]) { $text = $item.Exception.Message }
        else { $out.Add($text) }
        $lines.Add($text)
    }
    [pscustomobject]@{ ExitCode = $code; Lines = $lines.ToArray(); Out = $out.ToArray(); Text = ($lines.ToArray() -join "`n") }
}

function Invoke-Persnap([string[]]$Arguments, [string]$InputText) {
    if ($PSBoundParameters.ContainsKey('InputText')) { return Invoke-Native $PersnapExe $Arguments -InputText $InputText }
    return Invoke-Native $PersnapExe $Arguments
}

function Get-Tail($Result, [int]$Count = 6) {
    $all = @($Result.Lines | Where-Object { $_ -and $_.Trim() })
    if ($all.Count -eq 0) { return '(no output)' }
    return ($all[([Math]::Max(0, $all.Count - $Count))..($all.Count - 1)] -join ' | ')
}

# Throws with the end of the output; the whole output goes to the console and the log.
function Assert-Exit($Result, [string]$What, [int]$Expected = 0) {
    if ($Result.ExitCode -ne $Expected) {
        Write-Host ('        --- {0} exited {1}:' -f $What, $Result.ExitCode)
        foreach ($l in $Result.Lines) { Write-Host ('        ' + $l) }
        throw ('{0} exited {1}: {2}' -f $What, $Result.ExitCode, (Get-Tail $Result))
    }
}

function Get-LastLine($Lines) {
    $l = @($Lines | Where-Object { $_ -and $_.Trim() })
    if ($l.Count -eq 0) { return '' }
    return $l[$l.Count - 1].Trim()
}

# One argument for a Windows command line (Start-Process joins its -ArgumentList with
# spaces and quotes nothing in Windows PowerShell).
function ConvertTo-Arg([string]$Arg) {
    if ($Arg -and $Arg -notmatch '[\s"]') { return $Arg }
    return '"' + (($Arg -replace '(\\*)"', '$1$1\"') -replace '(\\+)$', '$1$1') + '"'
}

# A program in the background, output into files under WorkDir\logs.
function Start-Background([string]$FilePath, [string[]]$Arguments, [string]$Name) {
    $out = Join-Path $LogDir ($Name + '.out.txt')
    $err = Join-Path $LogDir ($Name + '.err.txt')
    $line = (@($Arguments | ForEach-Object { ConvertTo-Arg $_ })) -join ' '
    $p = Start-Process -FilePath $FilePath -ArgumentList $line -NoNewWindow -PassThru `
        -RedirectStandardOutput $out -RedirectStandardError $err
    # Without its handle taken now, Process.ExitCode stays empty after the exit.
    $null = $p.Handle
    [pscustomobject]@{ Process = $p; Out = $out; Err = $err }
}

# Deletes a file or a folder tree without going through links: Remove-Item -Recurse in
# Windows PowerShell 5.1 follows a junction or directory link and empties its target
# (PowerShell/PowerShell#621). A link is removed itself (Directory.Delete on a reparse
# point removes the link, never what it points to).
function Remove-Tree([string]$Path) {
    $item = Get-Item -LiteralPath $Path -Force
    if (($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) -ne 0) {
        if ($item.PSIsContainer) { [System.IO.Directory]::Delete($item.FullName, $false) }
        else { [System.IO.File]::Delete($item.FullName) }
        return
    }
    if ($item.PSIsContainer) {
        foreach ($child in @(Get-ChildItem -LiteralPath $item.FullName -Force)) { Remove-Tree $child.FullName }
    }
    Remove-Item -LiteralPath $item.FullName -Force
}

function Read-Lines([string]$Path) {
    if (Test-Path -LiteralPath $Path) { return @(Get-Content -LiteralPath $Path -Encoding UTF8) }
    return @()
}

function Read-Manifest([string]$BackupDir) {
    Get-Content -LiteralPath (Join-Path $BackupDir 'manifest.json') -Raw -Encoding UTF8 | ConvertFrom-Json
}

# Finished backups in a folder (a manifest, not .partial), oldest first.
function Get-Backups([string]$Dir) {
    if (-not (Test-Path -LiteralPath $Dir)) { return @() }
    @(Get-ChildItem -LiteralPath $Dir -Directory |
        Where-Object { $_.Name -notlike '*.partial' -and (Test-Path -LiteralPath (Join-Path $_.FullName 'manifest.json')) } |
        Sort-Object LastWriteTime)
}

# Copies a backup (every file: SQLite rolls a captured journal back on open) and runs
# persnap-loadgen check on the copy: integrity_check and the writer's invariant.
function Test-WithLoadgen([string]$BackupDir, [string]$Label, [switch]$InPlace) {
    if (-not $Loadgen) { return 'loadgen check skipped (no persnap-loadgen.exe)' }
    $dir = $BackupDir
    if (-not $InPlace) {
        $dir = Join-Path $ScratchDir $Label
        Copy-Item -LiteralPath $BackupDir -Destination $dir -Recurse
    }
    $r = Invoke-Native $Loadgen @('check', (Join-Path $dir 'persistence.db'))
    Assert-Exit $r 'persnap-loadgen check'
    'loadgen check ' + (Get-LastLine $r.Out)
}

function Invoke-Verify([string]$BackupDir) {
    $r = Invoke-Persnap @('verify', $BackupDir)
    Assert-Exit $r 'persnap verify'
    'verify: ' + (Get-Tail $r 2)
}

# Shadow copy ids, set ids, volume ids and shadow devices in `vssadmin list shadows`, and
# the same four of each Win32_ShadowCopy: compared before and after, whatever the display
# language (volume ids cancel out). Both are asked, so that a vssadmin that failed (or
# that exits non-zero when it finds none) never reads as "no shadow copy"; if neither
# answers, this throws rather than return an empty list that proves nothing.
function Get-ShadowIds {
    $pattern = '\{[0-9A-Fa-f-]{36}\}|HarddiskVolumeShadowCopy\d+'
    $ids = New-Object System.Collections.Generic.List[string]
    $why = @()
    $answered = 0
    $r = Invoke-Native $Vssadmin @('list', 'shadows')
    $found = @([regex]::Matches($r.Text, $pattern) | ForEach-Object { $_.Value.ToLowerInvariant() })
    foreach ($f in $found) { $ids.Add($f) }
    if ($r.ExitCode -eq 0 -or $found.Count -gt 0) { $answered++ }
    else { $why += ('vssadmin list shadows exited {0}: {1}' -f $r.ExitCode, (Get-Tail $r 2)) }
    try {
        foreach ($c in @(Get-CimInstance -ClassName Win32_ShadowCopy -ErrorAction Stop)) {
            foreach ($v in @((Get-Prop $c 'ID'), (Get-Prop $c 'SetID'), (Get-Prop $c 'DeviceObject'), (Get-Prop $c 'VolumeName'))) {
                if ($v) { foreach ($m in [regex]::Matches([string]$v, $pattern)) { $ids.Add($m.Value.ToLowerInvariant()) } }
            }
        }
        $answered++
    } catch { $why += ('Win32_ShadowCopy: ' + $_.Exception.Message) }
    if ($answered -eq 0) { throw ('no list of shadow copies to compare: ' + ($why -join '; ')) }
    @($ids | Sort-Object -Unique)
}

# Writers in `vssadmin list writers`, one block each: name, writer id, instance id,
# state ("[1] Stable", "[5] Waiting for completion": the number does not depend on the
# language) and last error. Only the ids and the number are relied on: the labels, the
# quotes around the name (' in English, " or others elsewhere, and French "l'enregistreur"
# has one of its own) and the colon are the display language's. Note: this is the state
# vssadmin's own requester sees, which is what the check in docs/WINDOWS.md looks at.
function Get-VssWriters {
    $r = Invoke-Native $Vssadmin @('list', 'writers')
    if ($r.ExitCode -ne 0) { throw ('vssadmin list writers exited {0}: {1}' -f $r.ExitCode, (Get-Tail $r)) }
    $guid = '\{[0-9A-Fa-f-]{36}\}'
    foreach ($block in ($r.Text -split '\n[ \t]*\n')) {
        $lines = @($block -split "`n" | Where-Object { $_.Trim() })
        $first = -1; $lastGuid = -1
        for ($i = 0; $i -lt $lines.Count; $i++) {
            if ($lines[$i] -match $guid) { if ($first -lt 0) { $first = $i }; $lastGuid = $i }
        }
        if ($first -lt 1 -or $lastGuid -ge $lines.Count - 1) { continue }
        $after = ($lines[($lastGuid + 1)..($lines.Count - 1)]) -join "`n"
        $state = [regex]::Match($after, '\[(\d+)\][ \t]*([^\r\n]*)')
        if (-not $state.Success) { continue }
        $guids = @([regex]::Matches(($lines[$first..$lastGuid] -join "`n"), $guid) | ForEach-Object { $_.Value.ToLowerInvariant() })
        $writerId = $guids[0]
        $instance = ''
        if ($guids.Count -gt 1) { $instance = $guids[$guids.Count - 1] }
        # The name: on the line before the writer id, after the label and its colon.
        $name = ($lines[$first - 1] -replace '^[^:\uFF1A]*[:\uFF1A]', '').Trim()
        $name = $name.Trim([char[]]@([char]0x27, [char]0x22, [char]0x60, [char]0xAB, [char]0xBB, [char]0x201C, [char]0x201D, [char]0x201E, [char]0x2018, [char]0x2019, [char]0x20)).Trim()
        if (-not $name) { $name = $writerId }
        $last = $lines[$lines.Count - 1]
        [pscustomobject]@{
            Key = $writerId + '|' + $instance; WriterId = $writerId; Name = $name
            State = [int]$state.Groups[1].Value; StateText = $state.Groups[2].Value.Trim()
            LastError = ($last -replace '^[^:\uFF1A]*[:\uFF1A]', '').Trim()
        }
    }
}

# Writers that changed against the baseline: a state other than Stable that was not
# there before, or a new last error. Pre-existing trouble is not persnap's. A writer
# hosted by the VSS service gets a new instance id when the service restarts (it stops
# when idle), so one not found by instance is compared with its writer id's.
function Compare-Writers($Baseline, $Now) {
    foreach ($w in @($Now)) {
        $before = @($Baseline | Where-Object { $_.Key -eq $w.Key }) | Select-Object -First 1
        if (-not $before) { $before = @($Baseline | Where-Object { $_.WriterId -eq $w.WriterId }) | Select-Object -First 1 }
        if ($w.State -ne 1 -and (-not $before -or $before.State -ne $w.State)) {
            '{0}: [{1}] {2}' -f $w.Name, $w.State, $w.StateText
        } elseif ($before -and $before.LastError -ne $w.LastError) {
            '{0}: last error "{1}" (before: "{2}")' -f $w.Name, $w.LastError, $before.LastError
        } elseif (-not $before -and $w.LastError -ne $S.NoError) {
            '{0}: last error "{1}"' -f $w.Name, $w.LastError
        }
    }
}

function Test-Task([string]$Name) {
    (Invoke-Native $Schtasks @('/Query', '/TN', ('\persnap\' + $Name))).ExitCode -eq 0
}

# Every task name under \persnap\ (schtasks /Query /FO CSV /NH: the first column, not
# translated; without /V the other columns do not matter). schtasks stops at a task it
# cannot read (exit 1), so this list may be short: it only says what else is there.
function Get-PersnapTasks {
    $r = Invoke-Native $Schtasks @('/Query', '/FO', 'CSV', '/NH')
    @($r.Out | ForEach-Object { ($_ -split '","')[0].Trim('"') } | Where-Object { $_ -like '\persnap\*' } | Sort-Object -Unique)
}

# The tasks of this check's own schedules that exist, asked one by one (schtasks /Query
# /TN: its exit code, whatever the language and whatever other task is unreadable).
function Get-OurTasks {
    @($FcNames | Where-Object { Test-Task $_ } | ForEach-Object { '\persnap\' + $_ })
}

# The schedules persnap has recorded (persnap schedule list: the name, then a tab), which
# is what the uninstaller's `persnap schedule remove --all` removes.
function Get-ScheduleNames {
    $r = Invoke-Persnap @('schedule', 'list')
    @($r.Out | Where-Object { $_ -match "`t" } | ForEach-Object { ($_ -split "`t")[0].Trim() } | Where-Object { $_ } | Sort-Object -Unique)
}

function Add-Schedule([string]$Name, [string[]]$Extra, [string]$Password) {
    $argv = @('schedule', 'add', $Name, '--source', $Store, '--at', $SchedAt) + $Extra
    if ($Password) { $r = Invoke-Persnap $argv -InputText $Password } else { $r = Invoke-Persnap $argv }
    if ($r.ExitCode -ne 0 -and $r.Text -match 'Install persnap with its setup program') {
        Skip-Check ('persnap rightly refuses to have a task run {0}, which is not in a folder only administrators can change: install it (or give -SetupExe) and run again' -f $PersnapExe)
    }
    [void]$Made.Add($Name)
    Assert-Exit $r ('persnap schedule add ' + $Name)
    if (-not (Test-Task $Name)) { throw ('schedule add exited 0 but schtasks does not know \persnap\' + $Name) }
    $S['Sched-' + $Name] = $true
    Get-LastLine $r.Lines
}

# schtasks /Run, then wait until the task has run and is no longer running; its last
# result (the exit code of persnap schedule run) must be 0. Read through
# the ScheduledTasks module: schtasks /Query /V prints translated column names.
# LastRunTime is when the last run started (set at its start); LastTaskResult is 0x41301
# while a run is going on, 0x41303 before the first. The run information is read before
# the state, so that a run starting or ending between the two reads is seen as running,
# and once the task is seen done its result is read once more, after that state.
function Invoke-ScheduledRun([string]$Name, [int]$TimeoutSeconds = 900) {
    $since = (Get-Date).AddSeconds(-5)
    Assert-Exit (Invoke-Native $Schtasks @('/Run', '/TN', ('\persnap\' + $Name))) ('schtasks /Run /TN \persnap\' + $Name)
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $started = $false
    $result = [int64]-1
    while ($sw.Elapsed.TotalSeconds -lt $TimeoutSeconds) {
        Start-Sleep -Seconds 3
        $info = Get-ScheduledTaskInfo -TaskPath '\persnap\' -TaskName $Name
        $state = [string](Get-ScheduledTask -TaskPath '\persnap\' -TaskName $Name).State
        $result = [int64]$info.LastTaskResult
        $running = ($state -eq 'Running' -or $state -eq 'Queued' -or $result -eq 0x41301)
        $ran = ($null -ne $info.LastRunTime -and $info.LastRunTime -ge $since)
        if ($running -or $ran) { $started = $true }
        if ($ran -and -not $running) {
            $result = [int64](Get-ScheduledTaskInfo -TaskPath '\persnap\' -TaskName $Name).LastTaskResult
            if ($result -ne 0) {
                throw ('last result 0x{0:X} (a named account must be an administrator allowed to log on as a batch job); persnap schedule list: {1}' -f $result, (Get-ScheduleLine $Name))
            }
            return [pscustomobject]@{ Seconds = [int]$sw.Elapsed.TotalSeconds }
        }
        if (-not $started -and $sw.Elapsed.TotalSeconds -gt 90) {
            throw ('the task did not start within 90 s (state {0}, last result 0x{1:X})' -f $state, $result)
        }
    }
    throw ('the task still runs after {0} s (last result 0x{1:X})' -f $TimeoutSeconds, $result)
}

# Four rows for scheduled backups run as $Who: a task into a folder (a: it installs,
# b: schtasks /Run runs it and its backup verifies) and one into the repository (c, d).
# The script blocks see this function's variables (Invoke-Check runs them from here),
# but Invoke-Check's own ($Id, $What, $Script, $out) come first: hence $Prefix, not $Id.
function Test-Schedules([string]$Prefix, [string]$Who, [string]$Name, [string[]]$Extra, [string]$Password, [string]$Skip, [string]$RepoNote) {
    $dest = Join-Path $WorkDir ('dest-' + $Name)
    $repoName = $Name + '-repo'
    Invoke-Check ($Prefix + 'a') ('persnap schedule add: a task run as {0}, into a folder' -f $Who) {
        if ($Skip) { Skip-Check $Skip }
        Need 'Store' 'needs the store of check 1'
        New-Item -ItemType Directory -Path $dest | Out-Null
        Add-Schedule $Name (@('--dest', $dest) + $Extra) $Password
    }
    Invoke-Check ($Prefix + 'b') ('the task run as {0} runs: last result 0, a new backup that verifies' -f $Who) {
        if ($Skip) { Skip-Check $Skip }
        Need ('Sched-' + $Name) ('needs the schedule of check ' + $Prefix + 'a')
        $run = Invoke-ScheduledRun $Name
        $backups = @(Get-Backups $dest)
        if ($backups.Count -eq 0) { throw ('the task ran, but no backup is in ' + $dest) }
        $b = $backups[$backups.Count - 1].FullName
        'ran {0} s; {1}; {2}' -f $run.Seconds, (Invoke-Verify $b), (Test-WithLoadgen $b ('copy-' + $Name))
    }
    Invoke-Check ($Prefix + 'c') ('persnap schedule add: a task run as {0}, into the repository ({1})' -f $Who, $RepoNote) {
        if ($Skip) { Skip-Check $Skip }
        Need 'Store' 'needs the store of check 1'
        Need 'Repo' 'needs the repository of check 5a'
        $line = Add-Schedule $repoName (@('--repo', $Repo, '--password-file', $PwFile) + $Extra) $Password
        $unlock = Join-Path $PersnapData ('repositories\' + $repoName + '.json')
        if (-not (Test-Path -LiteralPath $unlock)) { throw ('no ' + $unlock) }
        $line
    }
    Invoke-Check ($Prefix + 'd') ('the repository task run as {0} runs: last result 0, one more backup in the repository' -f $Who) {
        if ($Skip) { Skip-Check $Skip }
        Need ('Sched-' + $repoName) ('needs the schedule of check ' + $Prefix + 'c')
        $before = Get-RepoCount
        $run = Invoke-ScheduledRun $repoName
        $after = Get-RepoCount
        if ($after -le $before) { throw ('the repository lists {0} backups, as before' -f $after) }
        'ran {0} s; the repository went from {1} to {2} backups' -f $run.Seconds, $before, $after
    }
}

function Get-ScheduleLine([string]$Name) {
    $r = Invoke-Persnap @('schedule', 'list')
    @($r.Out | Where-Object { $_ -like ($Name + "`t*") }) -join ' '
}

# How many backups `persnap repo list --json` lists (one "id" key each).
function Get-RepoCount {
    $r = Invoke-Persnap @('repo', 'list', '--repo', $Repo, '--password-file', $PwFile, '--json')
    Assert-Exit $r 'persnap repo list'
    [regex]::Matches(($r.Out -join "`n"), '"id"\s*:').Count
}

function Get-AccountName([string]$Sid) {
    try { return (New-Object System.Security.Principal.SecurityIdentifier $Sid).Translate([System.Security.Principal.NTAccount]).Value }
    catch { return $Sid }
}

# Allow entries that grant write-like rights on Path itself (inherit-only entries apply
# to children, which are checked on their own), to the SIDs in $Only, or to anyone but
# the SIDs in $Except.
function Get-WriteGrants([string]$Path, [string[]]$Only, [string[]]$Except) {
    $acl = Get-Acl -LiteralPath $Path
    foreach ($rule in $acl.GetAccessRules($true, $true, [System.Security.Principal.SecurityIdentifier])) {
        if ([string]$rule.AccessControlType -ne 'Allow') { continue }
        if (([int]$rule.PropagationFlags -band 2) -ne 0) { continue }   # InheritOnly
        $sid = $rule.IdentityReference.Value
        if ($Only -and $Only -notcontains $sid) { continue }
        if ($Except -and $Except -contains $sid) { continue }
        if (([int]$rule.FileSystemRights -band $WriteRights) -ne 0) {
            '{0} may change {1} ({2})' -f (Get-AccountName $sid), $Path, $rule.FileSystemRights
        }
    }
}

function Get-Owner([string]$Path) {
    (Get-Acl -LiteralPath $Path).GetOwner([System.Security.Principal.SecurityIdentifier]).Value
}

# The SID of the local account persnap-fc-svc (checks 9a and 17), made on first use and
# removed by the clean-up. Disabled: it exists only to be named in a store's permissions.
# Without a password where the policy allows, else a random one. One left by an earlier
# field check is replaced.
function Get-SvcSid {
    if ($S['SvcSid']) { return $S['SvcSid'] }
    if (Get-LocalUser -Name $SvcName -ErrorAction SilentlyContinue) { Remove-LocalUser -Name $SvcName }
    $about = 'persnap field check (removed at the end)'
    try { $user = New-LocalUser -Name $SvcName -NoPassword -Disabled -Description $about }
    catch {
        $random = ConvertTo-SecureString -String ([guid]::NewGuid().ToString() + 'Aa1!') -AsPlainText -Force
        $user = New-LocalUser -Name $SvcName -Password $random -Disabled -Description $about
    }
    $S.SvcUser = $true
    $S.SvcSid = $user.SID.Value
    $S['SvcSid']
}

# The file's own Allow entries (explicit, not inherited) that let the SID read its data
# (ReadData), as "<account>: <rights>".
function Get-OwnReads([string]$Path, [string]$Sid) {
    $acl = Get-Acl -LiteralPath $Path
    foreach ($rule in $acl.GetAccessRules($true, $false, [System.Security.Principal.SecurityIdentifier])) {
        if ([string]$rule.AccessControlType -ne 'Allow' -or $rule.IsInherited) { continue }
        if ($rule.IdentityReference.Value -ne $Sid) { continue }
        if (([int]$rule.FileSystemRights -band 0x1) -eq 0) { continue }   # ReadData
        '{0}: {1}' -f (Get-AccountName $Sid), $rule.FileSystemRights
    }
}

# PE header: e_lfanew at 0x3C, then "PE\0\0", the 20-byte COFF header, and the optional
# header, whose Subsystem field is at offset 68 in PE32 and PE32+ alike: PE + 0x5C.
function Get-PeSubsystem([string]$Path) {
    $fs = [System.IO.File]::Open($Path, 'Open', 'Read', 'ReadWrite')
    try { $buf = New-Object byte[] 4096; $n = $fs.Read($buf, 0, $buf.Length) } finally { $fs.Dispose() }
    if ($n -lt 0x40 -or $buf[0] -ne 0x4D -or $buf[1] -ne 0x5A) { throw ($Path + ' is not an executable') }
    $pe = [BitConverter]::ToInt32($buf, 0x3C)
    if ($pe -lt 0 -or $pe + 0x60 -gt $n -or [BitConverter]::ToUInt32($buf, $pe) -ne 0x00004550) { throw ($Path + ' has no PE header') }
    [int][BitConverter]::ToUInt16($buf, $pe + 0x5C)
}

function Stop-Writer {
    $w = $S['Writer']
    if (-not $w) { return $null }
    $S.Remove('Writer')
    New-Item -ItemType File -Path $StopFile -Force | Out-Null
    if (-not $w.Process.WaitForExit(60000)) {
        $w.Process.Kill()       # our own process, by its object
        throw 'the writer did not stop within 60 s of its stop file; killed'
    }
    [pscustomobject]@{ ExitCode = $w.Process.ExitCode; Stats = (Get-LastLine (Read-Lines $w.Out)); Err = (Get-LastLine (Read-Lines $w.Err)) }
}

# ---------------------------------------------------------------- setting up

if (-not $PersnapDir) {
    if ((Test-Path -LiteralPath (Join-Path $InstalledDir 'persnap.exe')) -or $SetupExe) { $PersnapDir = $InstalledDir }
    else { $PersnapDir = $Here }
} elseif (Test-Path -LiteralPath $PersnapDir) {
    $PersnapDir = (Resolve-Path -LiteralPath $PersnapDir).Path   # check 12 compares it with the setup's folder
}
if ($SetupExe) {
    if (-not (Test-Path -LiteralPath $SetupExe)) { Write-Host ('No setup program at ' + $SetupExe); exit 2 }
    $SetupExe = (Resolve-Path -LiteralPath $SetupExe).Path
}
if (-not $WorkDir) { $WorkDir = Join-Path $env:SystemDrive ('persnap-field-check-' + $Stamp) }
# Its permissions are replaced and everything in it is removed: never a drive's root.
$fullWorkDir = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine((Get-Location -PSProvider FileSystem).ProviderPath, $WorkDir))
if ($fullWorkDir.TrimEnd('\') -eq ([System.IO.Path]::GetPathRoot($fullWorkDir)).TrimEnd('\')) {
    Write-Host "WorkDir $WorkDir is the root of a drive; give a new folder (its permissions are replaced, and everything in it is removed at the end)."
    exit 2
}
if ((Test-Path -LiteralPath $WorkDir) -and @(Get-ChildItem -LiteralPath $WorkDir -Force).Count -gt 0) {
    Write-Host "WorkDir $WorkDir is not empty; give a new folder (everything in it is removed at the end)."
    exit 2
}
New-Item -ItemType Directory -Path $WorkDir -Force | Out-Null
$WorkDir = (Resolve-Path -LiteralPath $WorkDir).Path
# Only SYSTEM and Administrators: the repository password file is in here, and a SYSTEM
# task must not back up from or into folders other users can change.
$acl = Invoke-Native $Icacls @($WorkDir, '/inheritance:r', '/grant:r', ('*' + $SidSystem + ':(OI)(CI)F'), ('*' + $SidAdmins + ':(OI)(CI)F'))
if ($acl.ExitCode -ne 0) { Write-Host ('note: could not restrict {0} to SYSTEM and Administrators: {1}' -f $WorkDir, (Get-Tail $acl)) }
$LogDir = Join-Path $WorkDir 'logs'
$ScratchDir = Join-Path $WorkDir 'scratch'
New-Item -ItemType Directory -Path $LogDir, $ScratchDir | Out-Null
$LogFile = Join-Path $WorkDir 'field-check.log'
try { Start-Transcript -Path $LogFile | Out-Null } catch { Write-Host ('(no transcript: ' + $_.Exception.Message + ')') }

# persnap prints UTF-8; read it as such, and feed passwords to it as UTF-8 without a BOM.
$OldConsoleEncoding = $null
try { $OldConsoleEncoding = [Console]::OutputEncoding; [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
$OutputEncoding = New-Object System.Text.UTF8Encoding $false

$Store = Join-Path $WorkDir 'store'
$StoreDb = Join-Path $Store 'persistence.db'
$StopFile = Join-Path $WorkDir 'writer.stop'
$Restricted = Join-Path $WorkDir 'restricted'
$AclStore = Join-Path $WorkDir 'acl-store'
$Repo = Join-Path $WorkDir 'repo'
$PwFile = Join-Path $WorkDir 'repo-password.txt'
$StagingDir = Join-Path $env:LOCALAPPDATA 'persnap\cache\staging'
$SystemStagingDir = Join-Path $Sys32 'config\systemprofile\AppData\Local\persnap\cache\staging'

$RunAsPlain = $null
if ($RunAsAccount -and -not $RunAsPassword) {
    $cred = $null
    try { $cred = Get-Credential -UserName $RunAsAccount -Message 'Password of the account for the --run-as checks (stored by Task Scheduler, removed with the tasks)' }
    catch { Write-Host ('(no password for the --run-as checks: ' + $_.Exception.Message + ')') }
    if ($cred) { $RunAsPassword = $cred.Password }
}
if ($RunAsAccount -and $RunAsPassword) {
    $RunAsPlain = (New-Object System.Management.Automation.PSCredential ('x', $RunAsPassword)).GetNetworkCredential().Password
}

$Loadgen = $null
foreach ($c in @($LoadgenExe, (Join-Path $Here 'persnap-loadgen.exe'), (Join-Path $PersnapDir 'persnap-loadgen.exe'))) {
    if ($c -and (Test-Path -LiteralPath $c)) { $Loadgen = (Resolve-Path -LiteralPath $c).Path; break }
}

# ---------------------------------------------------------------- the checks

try {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $nt = Get-ItemProperty -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion'
    Write-Host ('persnap field check, {0}' -f (Get-Date -Format 'yyyy-MM-dd HH:mm:ss zzz'))
    Write-Host ('Windows:      {0} {1} (build {2}.{3}, {4})' -f $os.Caption, $os.Version, $os.BuildNumber, (Get-Prop $nt 'UBR'), (Get-Prop $nt 'DisplayVersion'))
    Write-Host ('PowerShell:   {0} ({1})' -f $PSVersionTable.PSVersion, $PSVersionTable.PSEdition)
    try {
        $mp = Get-MpComputerStatus
        Write-Host ('Defender:     real-time protection {0}, antivirus {1}' -f (Get-Prop $mp 'RealTimeProtectionEnabled'), (Get-Prop $mp 'AntivirusEnabled'))
    } catch { Write-Host ('Defender:     unknown (' + $_.Exception.Message + ')') }
    try {
        # 0 off, 1 on (enforced), 2 evaluation; absent where Windows has no Smart App Control.
        $sacKey = 'HKLM:\SYSTEM\CurrentControlSet\Control\CI\Policy'
        $sac = $null
        if (Test-Path -LiteralPath $sacKey) { $sac = Get-Prop (Get-ItemProperty -LiteralPath $sacKey) 'VerifiedAndReputablePolicyState' }
        $sacText = 'not present'
        if ($null -ne $sac) { $sacText = @{ 0 = 'off'; 1 = 'ON (enforced): unsigned programs are blocked'; 2 = 'evaluation' }[[int]$sac] }
        Write-Host ('Smart App Control: ' + $sacText)
    } catch { Write-Host ('Smart App Control: unknown (' + $_.Exception.Message + ')') }
    Write-Host ('WorkDir:      ' + $WorkDir)
    Write-Host ('persnap-loadgen: ' + $(if ($Loadgen) { $Loadgen } else { 'not found (the live-store checks are skipped; give -LoadgenExe)' }))

    Invoke-Check '15a' 'silent setup (/S) installs into Program Files and ignores /D=' {
        if (-not $SetupExe) { Skip-Check 'no -SetupExe given' }
        $elsewhere = Join-Path $env:SystemDrive ('persnap-fc-elsewhere-' + $Stamp)
        # NSIS: /S silent; /D= must come last, unquoted even with spaces.
        $p = Start-Process -FilePath $SetupExe -ArgumentList ('/S /D=' + $elsewhere) -PassThru
        $null = $p.Handle
        if (-not $p.WaitForExit(600000)) { throw 'the setup did not finish within 10 minutes' }
        if ($p.ExitCode -ne 0) { throw ('the setup exited {0} (2: persnap was running, or an earlier one is installed elsewhere)' -f $p.ExitCode) }
        $missing = @('persnap.exe', 'persnap-helper.exe', 'Uninstall.exe' | Where-Object { -not (Test-Path -LiteralPath (Join-Path $InstalledDir $_)) })
        if ($missing.Count) { throw ('missing in {0}: {1}' -f $InstalledDir, ($missing -join ', ')) }
        if (Test-Path -LiteralPath $elsewhere) { Remove-Item -LiteralPath $elsewhere -Recurse -Force; throw ('/D= was honoured: files went to ' + $elsewhere) }
        $S.Installed = $true
        'installed in {0}; /D={1} ignored{2}' -f $InstalledDir, $elsewhere, $(if ($WasInstalled) { '; it replaced an installed persnap' } else { '' })
    }

    $PersnapExe = Join-Path $PersnapDir 'persnap.exe'
    $HelperExe = Join-Path $PersnapDir 'persnap-helper.exe'
    if (-not (Test-Path -LiteralPath $PersnapExe) -or -not (Test-Path -LiteralPath $HelperExe)) {
        throw ('persnap.exe and persnap-helper.exe are not both in {0}: give -PersnapDir (or -SetupExe)' -f $PersnapDir)
    }
    Write-Host ('persnap:      {0} ({1})' -f (Get-Tail (Invoke-Persnap @('--version')) 1), $PersnapDir)
    Write-Host ('Schedules made here run daily at {0} (12 hours away) and are removed again.' -f $SchedAt)
    Write-Host ''
    foreach ($t in @(Get-OurTasks)) {
        Write-Host ('(removing {0}, left by an earlier field check)' -f $t)
        $null = Invoke-Persnap @('schedule', 'remove', $t.Substring(9))
    }

    Invoke-Check '10a' 'persnap-helper.exe is a Windows GUI program: no console or Terminal window (finding 5)' {
        $sub = Get-PeSubsystem $HelperExe
        if ($sub -ne 2) { throw ('PE subsystem {0} ({1}); Windows Terminal shows an elevated window for a console helper, and closing it ends the backup' -f $sub, $(if ($sub -eq 3) { 'console' } else { 'unexpected' })) }
        'PE subsystem 2 (Windows GUI)'
    }
    Invoke-Check '10b' 'persnap.exe is a console program (prints and returns its status in cmd and PowerShell)' {
        $sub = Get-PeSubsystem $PersnapExe
        if ($sub -ne 3) { throw ('PE subsystem {0}, not 3 (console)' -f $sub) }
        'PE subsystem 3 (Windows console)'
    }

    $signed = @(@('11a', $PersnapExe), @('11b', $HelperExe))
    if ($SetupExe) { $signed += , @('11c', $SetupExe) }
    foreach ($pair in $signed) {
        $file = $pair[1]
        Invoke-Check $pair[0] ('{0} carries a valid Authenticode signature (finding 8)' -f (Split-Path -Leaf $file)) {
            $sig = Get-AuthenticodeSignature -LiteralPath $file
            $signer = '(none)'
            if ($sig.SignerCertificate) { $signer = $sig.SignerCertificate.Subject }
            if ([string]$sig.Status -ne 'Valid') {
                throw ('{0}, signer {1}: unsigned builds are blocked by Smart App Control, and UAC says "Unknown publisher"' -f $sig.Status, $signer)
            }
            'Valid, signer ' + $signer
        }
    }
    if (-not $SetupExe) { Write-Row 'SKIP' '11c' 'the setup program carries a valid Authenticode signature' 'no -SetupExe given' }

    Invoke-Check '11d' 'persnap.exe and persnap-helper.exe carry version information (finding 8)' {
        $found = foreach ($f in @($PersnapExe, $HelperExe)) {
            $vi = (Get-Item -LiteralPath $f).VersionInfo
            if (-not $vi.FileVersion) { throw ((Split-Path -Leaf $f) + ' has no FileVersion (no VERSIONINFO resource)') }
            '{0} {1} "{2}"' -f (Split-Path -Leaf $f), $vi.FileVersion, $vi.FileDescription
        }
        $found -join ', '
    }

    Invoke-Check '12' 'no ordinary user can change the install folder or its programs (finding 7)' {
        $paths = @($PersnapDir) + @(Get-ChildItem -LiteralPath $PersnapDir -Filter '*.exe' | ForEach-Object { $_.FullName })
        $grants = @(foreach ($p in $paths) { Get-WriteGrants $p ([string[]]$BroadSids.Keys) $null })
        if ($grants.Count) { throw ($grants -join '; ') }
        $note = ''
        if ($PersnapDir -ne $InstalledDir) { $note = ' (not the setup''s folder: this checks where the copy was unpacked)' }
        '{0} and {1} programs: owner {2}, no write for Users, Authenticated Users, Everyone, INTERACTIVE{3}' -f $PersnapDir, ($paths.Count - 1), (Get-AccountName (Get-Owner $PersnapDir)), $note
    }

    Invoke-Check '0' 'persnap prints its version and returns its exit status to PowerShell' {
        $v = Invoke-Persnap @('--version')
        Assert-Exit $v 'persnap --version'
        $text = Get-LastLine $v.Out
        if ($text -notmatch '^persnap \d') { throw ('persnap --version printed "{0}"' -f $text) }
        $bad = Invoke-Persnap @('verify', (Join-Path $WorkDir 'no-such-backup'))
        if ($bad.ExitCode -eq 0) { throw 'persnap verify of a missing folder exited 0' }
        '{0}; verify of a missing folder exited {1}' -f $text, $bad.ExitCode
    }

    Invoke-Check '1' 'a store with a live writer (persnap-loadgen init 64 MB, then run at 100 commits/s)' {
        if (-not $Loadgen) { Skip-Check 'persnap-loadgen.exe not found: give -LoadgenExe (target\x86_64-pc-windows-gnu\release of a build)' }
        New-Item -ItemType Directory -Path $Store | Out-Null
        Assert-Exit (Invoke-Native $Loadgen @('init', $StoreDb, '--size-mb', '64')) 'persnap-loadgen init'
        $S.Writer = Start-Background $Loadgen @('run', $StoreDb, '--stop-file', $StopFile, '--rate', '100') 'writer'
        Start-Sleep -Seconds 3
        if ($S.Writer.Process.HasExited) { throw ('the writer stopped at once: ' + (Get-LastLine (Read-Lines $S.Writer.Err))) }
        $S.Store = $true
        'writer pid {0}, store {1:N0} MiB' -f $S.Writer.Process.Id, ((Get-Item -LiteralPath $StoreDb).Length / 1048576)
    }

    Invoke-Check '3a' 'vssadmin before: shadow copies and writers recorded' {
        # Each on its own: writers still recorded when the shadow copies cannot be listed.
        $failed = @()
        try { $S.ShadowsBefore = @(Get-ShadowIds); $S.Baseline = $true } catch { $failed += $_.Exception.Message }
        try {
            $writers = @(Get-VssWriters)
            if ($writers.Count -eq 0) { throw 'vssadmin list writers listed no writer' }
            $S.NoError = (@($writers | Group-Object LastError | Sort-Object Count -Descending))[0].Name
            $S.WritersBefore = $writers
        } catch { $failed += $_.Exception.Message }
        if ($failed.Count) { throw ($failed -join '; ') }
        $unstable = @($S.WritersBefore | Where-Object { $_.State -ne 1 } | ForEach-Object { $_.Name })
        '{0} ids in list shadows, {1} writers, not stable already: {2}' -f $S.ShadowsBefore.Count, $S.WritersBefore.Count, $(if ($unstable.Count) { $unstable -join ', ' } else { 'none' })
    }
    if (-not $S['Baseline']) { $S.ShadowsBefore = @() }

    Invoke-Check '2' 'persnap probe names Volume Shadow Copy for the store' {
        Need 'Store' 'needs the store of check 1'
        $r = Invoke-Persnap @('probe', '--source', $Store)
        Assert-Exit $r 'persnap probe'
        # "Snapshot method: vss (volume C:\ (NTFS, Volume Shadow Copy))". Not just the words
        # anywhere: the reasons VSS is unavailable name Volume Shadow Copy too.
        $line = @($r.Out | Where-Object { $_ -match '^\s*Snapshot method: vss\b' })
        if ($line.Count -eq 0) { throw ('no "Snapshot method: vss" in: ' + (Get-Tail $r)) }
        $line[0].Trim()
    }

    Invoke-Check '2b' 'persnap probe --test-snapshot takes a shadow copy and removes it' {
        Need 'Store' 'needs the store of check 1'
        Need 'Baseline' 'needs the shadow copies listed in check 3a'
        $r = Invoke-Persnap @('probe', '--source', $Store, '--test-snapshot')
        Assert-Exit $r 'persnap probe --test-snapshot'
        # "Snapshot OK: created \\?\GLOBALROOT\Device\HarddiskVolumeShadowCopyN, found ...": the
        # proof that one was made (exit 0 alone would also follow a probe that took none).
        $ok = @($r.Out | Where-Object { $_ -match 'Snapshot OK: created \S*(HarddiskVolumeShadowCopy\d+)' })
        if ($ok.Count -eq 0) { throw ('no "Snapshot OK: created ...HarddiskVolumeShadowCopyN" in: ' + (Get-Tail $r)) }
        $device = [regex]::Match($ok[0], 'HarddiskVolumeShadowCopy\d+').Value.ToLowerInvariant()
        $now = @(Get-ShadowIds)
        if ($now -contains $device) { throw ($device + ' is still listed') }
        $left = @($now | Where-Object { $S.ShadowsBefore -notcontains $_ })
        if ($left.Count) { throw ('left in vssadmin list shadows: ' + ($left -join ', ')) }
        $device + ' was made and is gone'
    }

    Invoke-Check '4a' 'backup of the live store into a folder (persnap backup --source --dest): exit 0, method vss' {
        Need 'Store' 'needs the store of check 1'
        $dest = Join-Path $WorkDir 'dest'
        New-Item -ItemType Directory -Path $dest | Out-Null
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $S.BackupStarted = (Get-Date).AddSeconds(-2)
        $bg = Start-Background $PersnapExe @('backup', '--source', $Store, '--dest', $dest) 'backup-4a'
        # Check 3b: poll the writers while the backup runs; a sample counts only if the
        # backup was still running when vssadmin answered.
        $samples = 0; $problems = @(); $pollErrors = @()
        while (-not $bg.Process.HasExited -and $sw.Elapsed.TotalMinutes -lt 30) {
            if (-not $S['WritersBefore']) { Start-Sleep -Milliseconds 500; continue }
            try {
                $now = @(Get-VssWriters)
                if (-not $bg.Process.HasExited) { $samples++; $problems += @(Compare-Writers $S.WritersBefore $now) }
            } catch { $pollErrors += $_.Exception.Message }
            # vssadmin is a requester of its own: leave the service a moment between asks.
            Start-Sleep -Milliseconds 250
        }
        if (-not $bg.Process.WaitForExit(1800000)) { throw 'the backup still runs after 30 minutes' }
        $S.WriterSamples = $samples; $S.WriterProblems = @($problems | Sort-Object -Unique); $S.PollErrors = $pollErrors
        $out = @(Read-Lines $bg.Out); $err = @(Read-Lines $bg.Err)
        $result = [pscustomobject]@{ ExitCode = $bg.Process.ExitCode; Lines = @($err + $out) }
        Assert-Exit $result 'persnap backup'
        $backup = Get-LastLine $out
        if (-not (Test-Path -LiteralPath (Join-Path $backup 'manifest.json'))) { throw ('no manifest in the folder it printed: ' + $backup) }
        $m = Read-Manifest $backup
        if ($m.method -ne 'vss') { throw ('method ' + $m.method) }
        $S.Backup = $backup; $S.Snapshot = [string]$m.snapshot_id
        '{0} in {1:N1} s, snapshot {2}, integrity {3}' -f (Split-Path -Leaf $backup), $sw.Elapsed.TotalSeconds, $m.snapshot_id, $m.verification.integrity
    }

    Invoke-Check '3b' 'during the backup no VSS writer left Stable (no "Waiting for completion"): writers take no part' {
        Need 'Backup' 'needs the backup of check 4a'
        Need 'WritersBefore' 'needs the writers of check 3a'
        if ($S.WriterProblems.Count) { throw ($S.WriterProblems -join '; ') }
        if ($S.WriterSamples -eq 0) { Skip-Check ('the backup ended before vssadmin list writers answered once' + $(if ($S.PollErrors.Count) { ': ' + $S.PollErrors[0] } else { '' })) }
        '{0} samples of vssadmin list writers while the backup ran' -f $S.WriterSamples
    }

    Invoke-Check '3c' 'the backup''s shadow copy was made and is gone from vssadmin list shadows' {
        Need 'Backup' 'needs the backup of check 4a'
        Need 'Baseline' 'needs the shadow copies listed in check 3a'
        $device = [regex]::Match($S.Snapshot, 'HarddiskVolumeShadowCopy\d+').Value.ToLowerInvariant()
        if (-not $device) { throw ('the manifest names no shadow copy device: "{0}"' -f $S.Snapshot) }
        $now = @(Get-ShadowIds)
        if ($now -contains $device) { throw ($device + ' is still listed') }
        $new = @($now | Where-Object { $S.ShadowsBefore -notcontains $_ })
        if ($new.Count) { throw ('new in vssadmin list shadows: ' + ($new -join ', ')) }
        $device + ' was used and is gone'
    }

    Invoke-Check '18' 'the backup wrote event 100 into the Application log, in persnap''s words (its message file)' {
        Need 'Backup' 'needs the backup of check 4a'
        $filter = @{ LogName = 'Application'; ProviderName = 'persnap'; Id = 100; StartTime = $S.BackupStarted }
        $events = @(Get-WinEvent -FilterHashtable $filter -ErrorAction SilentlyContinue)
        if (-not $events.Count) { throw 'no event 100 from the source persnap since the backup began' }
        $message = [string]$events[0].Message
        if ($message -notlike 'The backup of *is verified and kept in*') {
            if (-not $S['Installed']) { Skip-Check ('not installed by the setup program here, so no message file: ' + $message) }
            throw ('Event Viewer shows: ' + $message)
        }
        '{0} ({1}): {2}' -f $events[0].Id, $events[0].LevelDisplayName, $message
    }

    Invoke-Check '4b' 'persnap verify of that backup' {
        Need 'Backup' 'needs the backup of check 4a'
        Invoke-Verify $S.Backup
    }
    Invoke-Check '4c' 'a copy of that backup passes integrity_check and the writer''s invariant' {
        Need 'Backup' 'needs the backup of check 4a'
        if (-not $Loadgen) { Skip-Check 'no persnap-loadgen.exe' }
        Test-WithLoadgen $S.Backup 'copy-4c'
    }
    Invoke-Check '4d' 'persnap restore of that backup into a new folder; the result is consistent' {
        Need 'Backup' 'needs the backup of check 4a'
        $to = Join-Path $WorkDir 'restored-folder'
        Assert-Exit (Invoke-Persnap @('restore', $S.Backup, '--to', $to)) 'persnap restore'
        Test-WithLoadgen $to 'restored-folder' -InPlace
    }

    Invoke-Check '5a' 'persnap repo init of a local repository (password from --password-file)' {
        Need 'Store' 'needs the store of check 1'
        [System.IO.File]::WriteAllText($PwFile, ([guid]::NewGuid().ToString('N') + 'Fc-1'))   # no BOM, no newline
        Assert-Exit (Invoke-Persnap @('repo', 'init', '--repo', $Repo, '--password-file', $PwFile)) 'persnap repo init'
        $S.Repo = $true
        $Repo
    }
    Invoke-Check '5b' 'backup of the live store into the repository (persnap backup --repo)' {
        Need 'Repo' 'needs the repository of check 5a'
        $r = Invoke-Persnap @('backup', '--source', $Store, '--repo', $Repo, '--password-file', $PwFile)
        Assert-Exit $r 'persnap backup --repo'
        $S.RepoId = Get-LastLine $r.Out
        if (-not $S.RepoId) { throw 'persnap backup --repo printed no backup id' }
        $list = Invoke-Persnap @('repo', 'list', '--repo', $Repo, '--password-file', $PwFile, '--json')
        Assert-Exit $list 'persnap repo list'
        if ($list.Text -notmatch [regex]::Escape($S.RepoId)) { throw ('{0} is not in persnap repo list' -f $S.RepoId) }
        'stored as ' + $S.RepoId
    }
    Invoke-Check '5c' 'persnap restore from the repository into a new folder; the result is consistent' {
        Need 'RepoId' 'needs the repository backup of check 5b'
        $to = Join-Path $WorkDir 'restored-repo'
        Assert-Exit (Invoke-Persnap @('restore', $S.RepoId, '--repo', $Repo, '--password-file', $PwFile, '--to', $to)) 'persnap restore --repo'
        Test-WithLoadgen $to 'restored-repo' -InPlace
    }

    Invoke-Check '8' 'a file of the new backup held open (as Defender does) does not fail the backup (finding 4)' {
        Need 'Store' 'needs the store of check 1'
        $dest = Join-Path $WorkDir 'dest-held'
        New-Item -ItemType Directory -Path $dest | Out-Null
        $ready = Join-Path $LogDir 'holder.ready'; $done = Join-Path $LogDir 'holder.done'
        # A second PowerShell watches for the .partial folder, opens persistence.db in it
        # for reading with FileShare.ReadWrite (as a scanner does), keeps it open until
        # persnap has written manifest.json (the rename is next, and cannot succeed while
        # the file is open), then 3 s more. persnap retries the rename for about 10 s.
        $job = Start-Job -ArgumentList $dest, $ready, $done -ScriptBlock {
            param($Dest, $Ready, $Done)
            [System.IO.File]::WriteAllText($Ready, 'ready')
            $deadline = [DateTime]::UtcNow.AddMinutes(20)
            $stream = $null; $folder = $null
            while (-not $stream -and [DateTime]::UtcNow -lt $deadline -and -not (Test-Path -LiteralPath $Done)) {
                foreach ($d in @(Get-ChildItem -LiteralPath $Dest -Directory -Filter '*.partial' -ErrorAction SilentlyContinue)) {
                    try { $stream = [System.IO.File]::Open((Join-Path $d.FullName 'persistence.db'), 'Open', 'Read', 'ReadWrite'); $folder = $d.FullName; break } catch { }
                }
                if (-not $stream) { Start-Sleep -Milliseconds 10 }
            }
            if (-not $stream) { return [pscustomobject]@{ Held = $false; Blocked = $false; Note = 'no .partial folder with persistence.db was seen' } }
            $manifest = Join-Path $folder 'manifest.json'
            while (-not (Test-Path -LiteralPath $manifest) -and [DateTime]::UtcNow -lt $deadline -and -not (Test-Path -LiteralPath $Done)) { Start-Sleep -Milliseconds 10 }
            $sawManifest = Test-Path -LiteralPath $manifest
            Start-Sleep -Seconds 3
            $blocked = Test-Path -LiteralPath $folder     # still .partial: the rename waited for us
            $stream.Dispose()
            [pscustomobject]@{ Held = $true; Blocked = ($sawManifest -and $blocked); Note = ('held {0}\persistence.db; manifest seen while held: {1}; still .partial after 3 s more: {2}' -f (Split-Path -Leaf $folder), $sawManifest, $blocked) }
        }
        try {
            $sw = [Diagnostics.Stopwatch]::StartNew()
            while (-not (Test-Path -LiteralPath $ready) -and $sw.Elapsed.TotalSeconds -lt 60) { Start-Sleep -Milliseconds 200 }
            if (-not (Test-Path -LiteralPath $ready)) { throw 'the watcher job did not start within 60 s' }
            $sw = [Diagnostics.Stopwatch]::StartNew()
            $r = Invoke-Persnap @('backup', '--source', $Store, '--dest', $dest)
            $seconds = $sw.Elapsed.TotalSeconds
            New-Item -ItemType File -Path $done -Force | Out-Null
            $held = @(Wait-Job -Job $job -Timeout 60 | Receive-Job) | Select-Object -Last 1
        } finally { Remove-Job -Job $job -Force }
        Assert-Exit $r 'persnap backup'
        $verify = Invoke-Verify (Get-LastLine $r.Out)
        if (-not $held -or -not $held.Held) { Skip-Check ('the backup passed in {0:N1} s, but the file was never held: {1}' -f $seconds, $(if ($held) { $held.Note } else { 'no report from the watcher' })) }
        if (-not $held.Blocked) { Skip-Check ('the backup passed in {0:N1} s, but the hold did not delay the rename, so it proved nothing: {1}' -f $seconds, $held.Note) }
        'took {0:N1} s; {1}; {2}' -f $seconds, $held.Note, $verify
    }

    Invoke-Check '9a' 'a second store readable only by SYSTEM and a service account (persnap-fc-svc)' {
        if (-not $Loadgen) { Skip-Check 'no persnap-loadgen.exe' }
        New-Item -ItemType Directory -Path $Restricted | Out-Null
        Assert-Exit (Invoke-Native $Loadgen @('init', (Join-Path $Restricted 'persistence.db'), '--size-mb', '8')) 'persnap-loadgen init'
        $sid = Get-SvcSid
        # The files first (their own ACL, inheritance removed), then the folder: once
        # the folder admits only these two, this administrator can no longer list it.
        # (The clean-up resets them from the first change on.)
        $S.RestrictedAcl = $true
        foreach ($f in @(Get-ChildItem -LiteralPath $Restricted -File)) {
            Assert-Exit (Invoke-Native $Icacls @($f.FullName, '/inheritance:r', '/grant:r', ('*' + $SidSystem + ':F'), ('*' + $sid + ':F'))) 'icacls (file)'
        }
        Assert-Exit (Invoke-Native $Icacls @($Restricted, '/inheritance:r', '/grant:r', ('*' + $SidSystem + ':(OI)(CI)F'), ('*' + $sid + ':(OI)(CI)F'))) 'icacls (folder)'
        $denied = $false
        try { [System.IO.File]::OpenRead((Join-Path $Restricted 'persistence.db')).Dispose() }
        catch { $denied = ($_.Exception.GetBaseException() -is [System.UnauthorizedAccessException]) }
        if (-not $denied) { throw 'this administrator can still read the store without backup semantics (or the read failed otherwise)' }
        $S.RestrictedStore = $true
        'only SYSTEM and {0} ({1}); a plain read by this administrator is denied' -f $SvcName, $sid
    }
    Invoke-Check '9b' 'that store backs up (SeBackupPrivilege, backup semantics) and verifies (finding 6)' {
        Need 'RestrictedStore' 'needs the store of check 9a'
        $dest = Join-Path $WorkDir 'dest-restricted'
        New-Item -ItemType Directory -Path $dest | Out-Null
        $r = Invoke-Persnap @('backup', '--source', $Restricted, '--dest', $dest)
        Assert-Exit $r 'persnap backup'
        $backup = Get-LastLine $r.Out
        (Invoke-Verify $backup) + '; ' + (Test-WithLoadgen $backup 'copy-9b')
    }

    # ---- scheduled tasks: as SYSTEM (6a-6d), and as a named account (7a-7d)
    $runAsSkip = ''
    if (-not $RunAsAccount) { $runAsSkip = 'no -RunAsAccount given' } elseif (-not $RunAsPlain) { $runAsSkip = 'no password for ' + $RunAsAccount }
    Test-Schedules '6' 'SYSTEM' 'fc-system' @() $null '' 'finding 1: installs on stock ProgramData permissions'
    Test-Schedules '7' $(if ($RunAsAccount) { $RunAsAccount } else { 'a named account' }) 'fc-runas' @('--run-as', $RunAsAccount) $RunAsPlain $runAsSkip 'finding 3'

    Invoke-Check '13' '%ProgramData%\persnap: every folder owned by Administrators or SYSTEM, changeable by nobody else; secret files likewise' {
        if (-not (Test-Path -LiteralPath $PersnapData)) { Skip-Check ('no ' + $PersnapData + ' (no schedule was made)') }
        $folders = @($PersnapData) + @(Get-ChildItem -LiteralPath $PersnapData -Directory -Recurse -Force | ForEach-Object { $_.FullName })
        $secrets = @()
        $repoDir = Join-Path $PersnapData 'repositories'
        if (Test-Path -LiteralPath $repoDir) { $secrets = @(Get-ChildItem -LiteralPath $repoDir -File -Force | ForEach-Object { $_.FullName }) }
        $problems = @()
        foreach ($p in ($folders + $secrets)) {
            $owner = Get-Owner $p
            if ($owner -ne $SidAdmins -and $owner -ne $SidSystem) { $problems += ('{0} is owned by {1}' -f $p, (Get-AccountName $owner)) }
            $problems += @(Get-WriteGrants $p $null @($SidSystem, $SidAdmins))
        }
        if ($problems.Count) { throw ($problems -join '; ') }
        '{0} folders and {1} repository files checked' -f $folders.Count, $secrets.Count
    }

    Invoke-Check '6e' 'persnap schedule remove: every task made here is gone, and its repository files' {
        $names = @($Made | Sort-Object -Unique)
        if ($names.Count -eq 0) { Skip-Check 'no schedule was made' }
        $failed = @()
        foreach ($n in $names) {
            $r = Invoke-Persnap @('schedule', 'remove', $n)
            if ($r.ExitCode -ne 0) { $failed += ('{0}: exit {1}: {2}' -f $n, $r.ExitCode, (Get-Tail $r 2)) }
        }
        $left = @($names | Where-Object { Test-Task $_ })
        $files = @()
        if (Test-Path -LiteralPath (Join-Path $PersnapData 'repositories')) {
            $files = @(Get-ChildItem -LiteralPath (Join-Path $PersnapData 'repositories') -File -Force |
                Where-Object { $names -contains ($_.Name -replace '(\.offsite)?\.json$', '') } | ForEach-Object { $_.Name })
        }
        if ($failed.Count -or $left.Count -or $files.Count) {
            throw ('remove failed: {0}; tasks left: {1}; repository files left: {2}' -f ($failed -join ', '), ($left -join ', '), ($files -join ', '))
        }
        $Made.Clear()
        'removed ' + ($names -join ', ')
    }

    Invoke-Check '14' 'persnap restore over the store in use refuses and names the process holding it' {
        Need 'Writer' 'needs the live writer of check 1'
        Need 'Backup' 'needs the backup of check 4a'
        # A restore replaces only a protected database's files: protect the store first.
        Assert-Exit (Invoke-Persnap @('database', 'add', 'fc-live', '--source', $Store)) 'persnap database add'
        $S['Db-fc-live'] = $true
        $r = Invoke-Persnap @('restore', $S.Backup, '--to', $Store)
        $moved = @(Get-ChildItem -LiteralPath $Store -Directory -Filter 'before-restore-*')
        $null = Invoke-Persnap @('database', 'remove', 'fc-live'); $S['Db-fc-live'] = $false
        if ($r.ExitCode -eq 0) { throw 'the restore ran over a database in use' }
        if ($moved.Count) { throw ('the refused restore moved files aside into ' + $moved[0].Name) }
        $line = @($r.Lines | Where-Object { $_ -match 'has the database open' })
        if ($line.Count -eq 0) { throw ('refused (exit {0}) without naming the process: {1}' -f $r.ExitCode, (Get-Tail $r 3)) }
        'exit {0}: {1}' -f $r.ExitCode, $line[0].Trim()
    }

    # Its own store (not the live writer's); before 3d and 16a-16c, which also look at
    # what its backup and restore leave (writers, shadow copy, staging folder).
    Invoke-Check '17' 'a restored store file keeps the explicit entry the old file had for a service account (finding 9)' {
        if (-not $Loadgen) { Skip-Check 'no persnap-loadgen.exe' }
        $sid = $null
        try { $sid = Get-SvcSid } catch { Skip-Check ('no account {0} to give the entry to: {1}' -f $SvcName, $_.Exception.Message) }
        New-Item -ItemType Directory -Path $AclStore | Out-Null
        $db = Join-Path $AclStore 'persistence.db'
        Assert-Exit (Invoke-Native $Loadgen @('init', $db, '--size-mb', '4')) 'persnap-loadgen init'
        # An entry on the file itself, as an administrator gives a correlator's service
        # account; the folder's (SYSTEM and Administrators, from WorkDir) stay inherited.
        Assert-Exit (Invoke-Native $Icacls @($db, '/grant', ('*' + $sid + ':(R)'))) 'icacls /grant'
        $old = @(Get-OwnReads $db $sid)
        if ($old.Count -eq 0) { throw ('icacls exited 0, but {0} has no entry of its own for {1}' -f $db, $SvcName) }
        $wasProtected = (Get-Acl -LiteralPath $db).AreAccessRulesProtected
        # A restore replaces only a protected database's files: protect the store first.
        Assert-Exit (Invoke-Persnap @('database', 'add', 'fc-acl', '--source', $AclStore)) 'persnap database add fc-acl'
        $S['Db-fc-acl'] = $true
        try {
            $dest = Join-Path $WorkDir 'dest-acl'
            New-Item -ItemType Directory -Path $dest | Out-Null
            $r = Invoke-Persnap @('backup', '--source', $AclStore, '--dest', $dest)
            Assert-Exit $r 'persnap backup'
            $backup = Get-LastLine $r.Out
            if (-not (Test-Path -LiteralPath (Join-Path $backup 'manifest.json'))) { throw ('no manifest in the folder it printed: ' + $backup) }
            Assert-Exit (Invoke-Persnap @('restore', $backup, '--to', $AclStore)) 'persnap restore'
        } finally {
            # Unprotected again at once (as in check 14); if that fails, the clean-up tries again.
            if ((Invoke-Persnap @('database', 'remove', 'fc-acl')).ExitCode -eq 0) { $S['Db-fc-acl'] = $false }
        }
        # The old file, moved aside: the one in the store now is the restored one.
        $aside = @(Get-ChildItem -LiteralPath $AclStore -Directory -Filter 'before-restore-*' |
            Where-Object { Test-Path -LiteralPath (Join-Path $_.FullName 'persistence.db') })
        if ($aside.Count -eq 0) { throw 'the restore exited 0, but no before-restore-* folder holds the old persistence.db: the file was not replaced' }
        $new = @(Get-OwnReads $db $sid)
        if ($new.Count -eq 0) {
            throw ('the restored persistence.db has no entry of its own for {0} (the old one had {1}): the correlator''s service account would lose access after a restore' -f $SvcName, ($old -join ', '))
        }
        $isProtected = (Get-Acl -LiteralPath $db).AreAccessRulesProtected
        $inheritance = @{ $true = 'off'; $false = 'on' }
        if ($isProtected -ne $wasProtected) {
            throw ('the entry is kept, but inheritance from the folder is {0} on the restored file and was {1} on the old one' -f $inheritance[$isProtected], $inheritance[$wasProtected])
        }
        # As icacls shows it: no (I), so the file's own.
        $shown = @((Invoke-Native $Icacls @($db)).Out | Where-Object { $_ -match [regex]::Escape($SvcName) } | ForEach-Object { $_.Replace($db, '').Trim() })
        'persistence.db restored (the old file is in {0}); its own entry: {1}; icacls: {2}; inheritance from the folder {3}, as before' -f $aside[0].Name, ($new -join ', '), $(if ($shown.Count) { $shown -join ', ' } else { '(no line names ' + $SvcName + ')' }), $inheritance[$isProtected]
    }

    Invoke-Check '1b' 'the writer stops cleanly, and the live store is consistent after all of this' {
        Need 'Writer' 'needs the live writer of check 1'
        $w = Stop-Writer
        if ($w.ExitCode -ne 0) { throw ('the writer exited {0}: {1}' -f $w.ExitCode, $w.Err) }
        'writer: {0}; {1}' -f $w.Stats, (Test-WithLoadgen $Store 'store' -InPlace)
    }

    Invoke-Check '3d' 'vssadmin after: every writer as before (Stable, no new error)' {
        Need 'WritersBefore' 'needs the writers of check 3a'
        $problems = @(Compare-Writers $S.WritersBefore @(Get-VssWriters))
        if ($problems.Count) { throw ($problems -join '; ') }
        'all {0} writers as before' -f $S.WritersBefore.Count
    }

    Invoke-Check '16a' 'leftovers: no shadow copy made during the run remains' {
        Need 'Baseline' 'needs the shadow copies listed in check 3a'
        $new = @(Get-ShadowIds | Where-Object { $S.ShadowsBefore -notcontains $_ })
        if ($new.Count) { throw ('new in vssadmin list shadows (another program''s, or persnap''s): ' + ($new -join ', ')) }
        'vssadmin list shadows as before'
    }
    Invoke-Check '16b' 'leftovers: no task of a schedule made here remains' {
        $left = @(Get-OurTasks)
        if ($left.Count) { throw ($left -join ', ') }
        'schtasks /Query /TN finds none of \persnap\' + ($FcNames -join ', ')
    }
    Invoke-Check '16c' 'leftovers: no .partial, scratch, staging or work-marker folder or file remains' {
        $names = @('*.partial', '.persnap-verify-*', '.persnap-deleting-*', '.persnap-restore-*', '.persnap-work')
        $left = @(Get-ChildItem -LiteralPath $WorkDir -Recurse -Force -ErrorAction SilentlyContinue |
            Where-Object { $n = $_.Name; @($names | Where-Object { $n -like $_ }).Count -gt 0 } | ForEach-Object { $_.FullName })
        # This administrator's staging folder (checks 5b) and SYSTEM's (its repository
        # task stages there); only what was made during this run.
        foreach ($dir in @($StagingDir, $SystemStagingDir)) {
            if (Test-Path -LiteralPath $dir) {
                $left += @(Get-ChildItem -LiteralPath $dir -Force | Where-Object { $_.CreationTime -ge $RunStart } | ForEach-Object { $_.FullName })
            }
        }
        if ($left.Count) { throw ($left -join ', ') }
        'none in WorkDir, ' + $StagingDir + ' or ' + $SystemStagingDir
    }

    Invoke-Check '15b' 'silent uninstall removes the program and its schedules, and keeps %ProgramData%\persnap' {
        Need 'Installed' 'needs -SetupExe (check 15a)'
        # The uninstaller runs `persnap schedule remove --all`: not while this machine has a
        # schedule of its own, recorded (schedule list) or as a task (schtasks).
        $others = @(@(Get-ScheduleNames) + @(Get-PersnapTasks | ForEach-Object { $_.Substring(9) }) |
            Where-Object { $FcNames -notcontains $_ } | Sort-Object -Unique)
        if ($others.Count) { Skip-Check ('the uninstaller removes every persnap schedule, and this machine has its own: ' + ($others -join ', ')) }
        $installedExe = Join-Path $InstalledDir 'persnap.exe'
        $note = 'no schedule for it to remove (no store)'
        if ($S['Store']) {
            $d = Join-Path $WorkDir 'dest-uninstall'
            New-Item -ItemType Directory -Path $d -Force | Out-Null
            $r = Invoke-Native $installedExe @('schedule', 'add', 'fc-uninstall', '--source', $Store, '--dest', $d, '--at', $SchedAt)
            [void]$Made.Add('fc-uninstall')
            Assert-Exit $r 'persnap schedule add fc-uninstall'
            $note = 'it removed \persnap\fc-uninstall'
        }
        # The uninstaller normally copies itself to %TEMP% and returns at once; a copy run
        # with _?=<folder> does the same work in this process, so its exit code is real.
        $copy = Join-Path $WorkDir 'Uninstall-copy.exe'
        Copy-Item -LiteralPath (Join-Path $InstalledDir 'Uninstall.exe') -Destination $copy
        $p = Start-Process -FilePath $copy -ArgumentList ('/S _?=' + $InstalledDir) -PassThru
        $null = $p.Handle
        if (-not $p.WaitForExit(600000)) { throw 'the uninstaller did not finish within 10 minutes' }
        $code = $p.ExitCode
        $S.Installed = $false
        $problems = @()
        if ($code -ne 0) { $problems += ('exit code {0} (2: persnap running, or its schedules could not be removed)' -f $code) }
        foreach ($f in @('persnap.exe', 'persnap-helper.exe', 'Uninstall.exe')) { if (Test-Path -LiteralPath (Join-Path $InstalledDir $f)) { $problems += ($f + ' is still there') } }
        if (Test-Path -LiteralPath 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\persnap') { $problems += 'its Apps entry is still there' }
        if (Test-Task 'fc-uninstall') { $problems += 'the task \persnap\fc-uninstall is still there' } else { [void]$Made.Remove('fc-uninstall') }
        if (-not (Test-Path -LiteralPath $PersnapData)) { $problems += ($PersnapData + ' was removed') }
        if ($problems.Count) { throw ($problems -join '; ') }
        '{0}; {1} kept' -f $note, $PersnapData
    }

    Write-Row 'MANUAL' 'M1' 'UAC: prompt over the window, declined, cancelled while unanswered' 'as a user with UAC prompting, start a backup in the app and decline: "You declined the administrator prompt; the backup did not run."; start again and press Cancel while the prompt shows'
    Write-Row 'MANUAL' 'M2' 'no console window stays beside the app; the command line works in cmd' 'start persnap from the Start menu: no console stays (one may flash); in cmd.exe run "persnap --version" and "echo %ERRORLEVEL%"'
    Write-Row 'MANUAL' 'M3' 'no Terminal window during a backup on Windows 11' 'with Windows Terminal as the default terminal, back up from the app: no elevated window appears (check 10a proves the cause)'
    Write-Row 'MANUAL' 'M4' 'the setup''s finish page starts the app unelevated' 'run the setup by hand, finish with "Run persnap" ticked; Task Manager, Details, column "Elevated" says No for persnap.exe'
    Write-Row 'MANUAL' 'M5' 'the shadow storage overflow check' 'vssadmin resize shadowstorage /for=C: /on=C: /maxsize=320MB, back up a large busy store: it fails with "the shadow storage filled up" and nothing is recorded as good; then set maxsize back'
    Write-Row 'MANUAL' 'M6' 'a schedule to a share as a named account' 'persnap schedule add t --source <store> --dest \\nas\backups --at hourly --run-as CORP\svc-backup; schtasks /Run /TN \persnap\t; persnap schedule list shows it ran (checks 7a-7d did this into a local folder)'
} catch {
    Write-Row 'FAIL' '--' 'the field check stopped' $_.Exception.Message
} finally {
    # ------------------------------------------------------------ clean-up (always)
    Write-Host ''
    # Each step on its own: one that fails never keeps the next from running.
    $notes = @()
    try { if ($S['Writer']) { $null = Stop-Writer } } catch { $notes += ('writer: ' + $_.Exception.Message) }
    try {
        if ((Get-Variable -Name PersnapExe -ErrorAction SilentlyContinue) -and (Test-Path -LiteralPath $PersnapExe)) {
            foreach ($n in $FcNames) {
                if (Test-Task $n) { $r = Invoke-Persnap @('schedule', 'remove', $n); if ($r.ExitCode -ne 0) { $notes += ('could not remove task \persnap\' + $n + ': ' + (Get-Tail $r 2)) } }
            }
            foreach ($n in $FcDatabases) {
                if ($S['Db-' + $n]) { $r = Invoke-Persnap @('database', 'remove', $n); if ($r.ExitCode -ne 0) { $notes += ('could not unprotect the database ' + $n + ': ' + (Get-Tail $r 2)) } }
            }
        }
    } catch { $notes += ('removing the schedules and databases made here: ' + $_.Exception.Message) }
    try {
        # A task persnap could not remove (or persnap is gone): schtasks removes it, so that
        # nothing is left to run. Its record in %ProgramData%\persnap\schedules may stay.
        foreach ($t in @(Get-OurTasks)) {
            $r = Invoke-Native $Schtasks @('/Delete', '/TN', $t, '/F')
            $notes += ('{0} was left; schtasks /Delete exited {1}' -f $t, $r.ExitCode)
        }
    } catch { $notes += ('schtasks /Delete: ' + $_.Exception.Message) }
    try {
        if ($S['RestrictedAcl']) {
            # This administrator owns the folder and files (made them), so may re-permission
            # them: the folder first (then it can be listed again), then what is inside.
            $null = Invoke-Native $Icacls @($Restricted, '/reset')
            $null = Invoke-Native $Icacls @($Restricted, '/reset', '/T', '/C', '/Q')
        }
    } catch { $notes += ('icacls /reset ' + $Restricted + ': ' + $_.Exception.Message) }
    if ($S['SvcUser']) { try { Remove-LocalUser -Name $SvcName } catch { $notes += ('could not remove the account ' + $SvcName + ': ' + $_.Exception.Message) } }
    if ($WasInstalled -and $SetupExe -and -not (Test-Path -LiteralPath (Join-Path $InstalledDir 'persnap.exe'))) {
        # persnap was installed before: put it back (the version of -SetupExe).
        try {
            $p = Start-Process -FilePath $SetupExe -ArgumentList '/S' -PassThru
            $null = $p.Handle
            if ($p.WaitForExit(600000)) { $notes += ('persnap reinstalled from ' + $SetupExe + ', exit ' + $p.ExitCode) }
            else { $notes += ('the setup reinstalling persnap from ' + $SetupExe + ' still runs after 10 minutes') }
        } catch { $notes += ('could not reinstall persnap: ' + $_.Exception.Message) }
    }
    if (-not $Keep) {
        try {
            foreach ($item in @(Get-ChildItem -LiteralPath $WorkDir -Force -ErrorAction SilentlyContinue)) {
                if ($item.FullName -eq $LogFile) { continue }
                try { Remove-Tree $item.FullName }
                catch { $notes += ('could not remove ' + $item.FullName + ': ' + $_.Exception.Message) }
            }
        } catch { $notes += ('emptying ' + $WorkDir + ': ' + $_.Exception.Message) }
        try {
            # The histories of the schedules made here (persnap keeps them after removal),
            # by name: never another schedule's.
            $hist = Join-Path $PersnapData 'schedules\history'
            if (Test-Path -LiteralPath $hist) {
                foreach ($item in @(Get-ChildItem -LiteralPath $hist -Directory | Where-Object { $FcNames -contains $_.Name })) {
                    try { Remove-Tree $item.FullName } catch { $notes += ('could not remove ' + $item.FullName + ': ' + $_.Exception.Message) }
                }
            }
        } catch { $notes += ('removing the schedules'' histories: ' + $_.Exception.Message) }
    }
    foreach ($n in $notes) { Write-Host ('note: ' + $n) }

    $count = @{}
    # (Not $s: PowerShell names are case-insensitive, and $S holds the checks' state.)
    foreach ($status in @('PASS', 'FAIL', 'SKIP', 'MANUAL')) { $count[$status] = @($Results | Where-Object { $_.Status -eq $status }).Count }
    Write-Host ''
    Write-Host ('SUMMARY: {0} passed, {1} failed, {2} skipped, {3} manual' -f $count['PASS'], $count['FAIL'], $count['SKIP'], $count['MANUAL'])
    Write-Host ('Log: ' + $LogFile + $(if ($Keep) { '' } else { ' (the rest of ' + $WorkDir + ' was removed)' }))
    Write-Host 'Send the log (or everything above from "persnap field check") back.'
    try { Stop-Transcript | Out-Null } catch { }
    if ($null -ne $OldConsoleEncoding) { try { [Console]::OutputEncoding = $OldConsoleEncoding } catch { } }
}
if (@($Results | Where-Object { $_.Status -eq 'FAIL' }).Count -gt 0) { exit 1 }
exit 0
