namespace Qed.Tests.Nbd.Client;

/// <summary>
/// An image served over a unix socket by one of the two servers the client tests run against: qemu-nbd (the oracle)
/// or our own <c>NbdServer</c> in-process (<see cref="NbdTestServer"/>).
/// </summary>
internal sealed class ServedImage : IAsyncDisposable
{
    /// <summary>The server names the theories take.</summary>
    public const string QemuNbd = "qemu-nbd";
    public const string Qed = "qed";

    private readonly QemuNbdServer? _qemu;
    private readonly NbdTestServer? _ours;

    private ServedImage(QemuNbdServer? qemu, NbdTestServer? ours)
    {
        _qemu = qemu;
        _ours = ours;
    }

    public string SocketPath => _qemu?.SocketPath ?? _ours!.SocketPath;

    /// <summary>The URI of export <paramref name="name"/>, percent-encoded.</summary>
    public string Uri(string name = "") =>
        $"nbd+unix:///{System.Uri.EscapeDataString(name).Replace("%2F", "/", StringComparison.Ordinal)}?socket={SocketPath}";

    /// <summary>Serves the QED image <paramref name="image"/> as <paramref name="exportName"/> with <paramref name="server"/>.</summary>
    public static ServedImage Start(string server, string directory, string image, bool readOnly, string exportName = "", string? description = null)
    {
        switch (server)
        {
            case QemuNbd:
                var arguments = new List<string> { "-f", "qed" };
                if (readOnly)
                {
                    arguments.Add("-r");
                }
                if (exportName.Length > 0)
                {
                    arguments.AddRange(["-x", exportName]);
                }
                if (description is not null)
                {
                    arguments.AddRange(["-D", description]);
                }
                return new ServedImage(QemuNbdServer.Start(directory, image, [.. arguments]), null);
            case Qed:
                return new ServedImage(null, NbdTestServer.Start(directory, image, exportName, readOnly,
                    configureExport: e => description is null ? e : e with { Description = description }));
            default:
                throw new ArgumentOutOfRangeException(nameof(server), server, "unknown server");
        }
    }

    public async ValueTask DisposeAsync()
    {
        _qemu?.Dispose();
        if (_ours is not null)
        {
            await _ours.DisposeAsync();
        }
    }
}
