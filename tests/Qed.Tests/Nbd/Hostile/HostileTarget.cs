using Qed.Nbd.Protocol;
using Qed.Tests.Nbd.Interop;

namespace Qed.Tests.Nbd.Hostile;

/// <summary>
/// A server under the prober: where it listens, the export name, and what a well-behaved client must read from it.
/// The image holds <see cref="Pattern"/> in its first MiB and nothing at <see cref="UntouchedOffset"/>, where the
/// prober's refused and unfinished writes aim: a write the server applied anyway shows up there.
/// <see cref="ReadOnlyTarget"/> is the same server program started with <c>-r</c> on a copy of the image.
/// </summary>
internal sealed record HostileTarget(NbdServerProcess Server, string Export, HostileTarget? ReadOnlyTarget = null)
{
    /// <summary>Byte of the first MiB.</summary>
    public const byte Pattern = 0x5c;

    /// <summary>Where the refused writes point; must read back as zeros.</summary>
    public const ulong UntouchedOffset = 16UL << 20;

    /// <summary>Export size (the interop images' 64 MiB).</summary>
    public const ulong Size = (ulong)InteropImages.Size;

    /// <summary>Most clients the server is started with (<c>-e</c>).</summary>
    public const int MaxClients = 8;

    /// <summary>The unix socket, or null for TCP.</summary>
    public string? SocketPath => Server.SocketPath;

    /// <summary>The TCP port when not on a unix socket.</summary>
    public int Port => Server.Port;

    /// <summary>"qed" or "qemu-nbd".</summary>
    public string Name => Server.Name;

    /// <summary>
    /// A well-behaved client: handshake, READ 64 KiB of the pattern and 64 KiB at the untouched offset, DISC. Returns
    /// null when everything came back right, else what went wrong.
    /// </summary>
    public string? NormalClientProblem()
    {
        if (Server.HasExited)
        {
            return $"server exited: {Server.StdErr.Trim()}";
        }
        try
        {
            using var client = HostileConnection.Connect(this, TimeSpan.FromSeconds(5));
            client.Go(Export);
            var pattern = client.Request(NbdCommand.Read, 0, 65536);
            if (pattern.Error != 0 || pattern.Data is null || pattern.Data.Any(b => b != Pattern))
            {
                return $"READ at 0: {HostileConnection.ErrorName(pattern.Error)}, {(pattern.Data is null ? "no data" : "wrong data")}";
            }
            var untouched = client.Request(NbdCommand.Read, UntouchedOffset, 65536);
            if (untouched.Error != 0 || untouched.Data is null || untouched.Data.Any(b => b != 0))
            {
                return $"READ at 16 MiB: {HostileConnection.ErrorName(untouched.Error)}, {(untouched.Data is null ? "no data" : "not zeros: a refused write was applied")}";
            }
            client.SendRequest(NbdCommand.Disc, 0, 0);
            return null;
        }
        catch (Exception e) when (e is ProbeDroppedException or ProbeSilentException or InvalidOperationException or System.Net.Sockets.SocketException or OperationCanceledException)
        {
            return $"normal client failed: {e.GetType().Name}: {e.Message}";
        }
    }
}
