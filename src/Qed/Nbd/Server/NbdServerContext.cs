namespace Qed.Nbd.Server;

/// <summary>What every connection of one server shares: the exports, the limits, the stop signal and the diagnostics sink.</summary>
internal sealed class NbdServerContext
{
    public NbdServerContext(IReadOnlyList<NbdExport> exports, NbdServerOptions options, CancellationToken stopping)
    {
        Exports = exports;
        Options = options;
        Stopping = stopping;
    }

    public IReadOnlyList<NbdExport> Exports { get; }

    public NbdServerOptions Options { get; }

    /// <summary>Signalled when the server shuts down: handshakes answer ERR_SHUTDOWN, transmission stops reading and finishes what it has.</summary>
    public CancellationToken Stopping { get; }

    public bool TlsRequired => Options.TlsCertificate is not null;

    /// <summary>The export a client names; the empty name means the first export (qemu-nbd's default export).</summary>
    public NbdExport? FindExport(string name)
    {
        if (name.Length == 0)
        {
            return Exports.Count > 0 ? Exports[0] : null;
        }

        foreach (var export in Exports)
        {
            if (export.Name == name)
            {
                return export;
            }
        }

        return null;
    }

    /// <summary>Reports a client dropped or failed (one line), when the owner asked for diagnostics.</summary>
    public void Report(string message) => Options.Diagnostics?.Invoke(message);
}
