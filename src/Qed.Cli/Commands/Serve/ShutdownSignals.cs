using System.Runtime.InteropServices;

namespace Qed.Cli.Commands.Serve;

/// <summary>
/// SIGTERM, SIGINT and SIGHUP (qemu-nbd's three) ask the server to shut down cleanly: the process is kept alive and
/// <see cref="Stopping"/> is cancelled. A second signal while shutting down gets the default action, so an operator can
/// still end a shutdown that waits on a stuck client.
/// </summary>
/// <remarks>
/// A signal the process inherited ignored stays ignored: the runtime keeps that disposition, so a server started as a
/// background job of a non-interactive shell (which ignores SIGINT there) stops on SIGTERM only. qemu-nbd overrides it.
/// </remarks>
internal sealed class ShutdownSignals : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly PosixSignalRegistration[] _registrations;
    private int _received;

    /// <summary>Starts listening for the signals.</summary>
    public ShutdownSignals()
    {
        _registrations =
        [
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
            PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal),
        ];
    }

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Stopping => _stop.Token;

    private void OnSignal(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref _received) == 1)
        {
            context.Cancel = true;
            _stop.Cancel();
        }
    }

    /// <summary>Stops listening; the signals get their default actions again.</summary>
    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
        _stop.Dispose();
    }
}
