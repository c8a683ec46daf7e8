@echo off
rem Installs the ByteBiota worker's supervisor as a Windows service with NSSM 2.24
rem (docs/runbooks/worker-service.md, "Windows"). Run it as an administrator after
rem `bytebiota-worker.exe install --install-root ROOT`:
rem
rem   install-service.cmd NSSM_EXE INSTALL_ROOT CONFIG_FILE [SERVICE_NAME]
rem
rem The service starts versions\<launcher>\bytebiota-worker.exe, the version the launcher
rem pointer file names; the supervisor moves it to each newer proven version itself
rem (--windows-service) and exits 75 to be restarted into it. Exit codes: 0 (stopped cleanly),
rem 2 (usage error) and 3 (refused to start) leave the service stopped, for an operator to
rem look at; every other exit, 75 included, is restarted at once, and NSSM's throttle backs off
rem a program that keeps dying within 1.5 s (no AppRestartDelay: under Wine it stops restarts).
setlocal EnableExtensions
set "NSSM=%~1"
set "ROOT=%~2"
set "CONFIG=%~3"
set "NAME=%~4"
if "%NAME%"=="" set "NAME=bytebiota-worker"
if "%CONFIG%"=="" (
  echo usage: install-service.cmd NSSM_EXE INSTALL_ROOT CONFIG_FILE [SERVICE_NAME] 1>&2
  exit /b 2
)
rem NSSM joins the arguments into one command line: paths with spaces would be split there.
if not "%ROOT%"=="%ROOT: =%" goto :spaces
if not "%CONFIG%"=="%CONFIG: =%" goto :spaces
if not exist "%NSSM%" (
  echo no NSSM at %NSSM% 1>&2
  exit /b 2
)
if not exist "%CONFIG%" (
  echo no configuration file at %CONFIG% 1>&2
  exit /b 2
)
set "VERSION="
if exist "%ROOT%\launcher" for /f "usebackq delims=" %%v in ("%ROOT%\launcher") do set "VERSION=%%v"
if "%VERSION%"=="" (
  echo %ROOT% has no launcher pointer: run bytebiota-worker.exe install --install-root %ROOT% first 1>&2
  exit /b 2
)
set "EXE=%ROOT%\versions\%VERSION%\bytebiota-worker.exe"
if not exist "%EXE%" (
  echo the launcher names %VERSION%, but %EXE% is missing 1>&2
  exit /b 2
)
if not exist "%ROOT%\logs" mkdir "%ROOT%\logs"
rem Each step's errorlevel is checked on a line of its own, not with "||": Wine 8's cmd runs what
rem follows "||" even after a success.

"%NSSM%" install "%NAME%" "%EXE%" supervise --config "%CONFIG%" --windows-service "%NAME%"
if errorlevel 1 exit /b 1
call :set AppDirectory "%ROOT%"
if errorlevel 1 exit /b 1
call :set AppExit Default Restart
if errorlevel 1 exit /b 1
call :set AppExit 0 Exit
if errorlevel 1 exit /b 1
call :set AppExit 2 Exit
if errorlevel 1 exit /b 1
call :set AppExit 3 Exit
if errorlevel 1 exit /b 1
rem A stop is Ctrl+C only (Node's SIGINT): the supervisor passes it to the worker, which ends its
rem unit of work first. Keep the wait above the supervisor's --stop-timeout (default 30 s).
call :set AppStopMethodSkip 6
if errorlevel 1 exit /b 1
call :set AppStopMethodConsole 60000
if errorlevel 1 exit /b 1
call :set AppStdout "%ROOT%\logs\supervisor.log"
if errorlevel 1 exit /b 1
call :set AppStderr "%ROOT%\logs\supervisor.log"
if errorlevel 1 exit /b 1
call :set AppRotateFiles 1
if errorlevel 1 exit /b 1
call :set AppRotateOnline 1
if errorlevel 1 exit /b 1
call :set AppRotateBytes 10485760
if errorlevel 1 exit /b 1
echo installed service %NAME%: %EXE%
exit /b 0

:set
"%NSSM%" set "%NAME%" %* >nul
exit /b %ERRORLEVEL%

:spaces
echo the install root and configuration file paths must not contain spaces 1>&2
exit /b 2
