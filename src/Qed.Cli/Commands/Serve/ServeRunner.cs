using Qed.Formats;
using Qed.IO;
using Qed.Nbd.Server;

namespace Qed.Cli.Commands.Serve;

/// <summary>
/// The server's life, in qemu-nbd's order: TLS credentials, listening socket, image, pid file; then serving until a
/// signal or (without <c>-t</c>) the last client leaving; then the requests in flight finish, the image is flushed and
/// closed (its need-check bit cleared), and the socket and pid files are removed.
/// </summary>
internal static class ServeRunner
{
    private const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Serves as <paramref name="settings"/> say and returns the exit status.</summary>
    /// <exception cref="CliException">Credentials, listener, image or pid file could not be set up; nothing was served.</exception>
    public static int Run(ServeSettings settings, CommandContext context)
    {
        ServeDaemon.DetachIfChild();
        string? readOnlyWarning = ReadOnlyWhenUnwritable(ref settings);
        // Socket continuations then run on the runtime's epoll threads instead of hopping to the thread pool: small
        // cached requests are answered without a thread switch (measured: 4 KiB reads at depth 16 about twice the
        // IOPS). The runtime reads the variable once, when its socket engine starts, so this comes before any socket;
        // a value the user set is kept.
        if (Environment.GetEnvironmentVariable(InlineCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletions, "1");
        }
        using var signals = new ShutdownSignals();
        var credentials = LoadCredentials(settings.TlsCredentialsDirectory);
        using var listeners = ServeListeners.Open(settings);
        PidFile? pidFile = null;
        try
        {
            // The image is closed (need-check cleared) before the pid file goes: whoever waits on that file finds it done.
            using var device = ImageOpener.Open(settings.FileName, settings.Format, ImageOpener.Options(settings.ReadOnly, settings.L2CacheSize));
            if (readOnlyWarning is not null)
            {
                context.Warning(readOnlyWarning);
            }
            pidFile = settings.PidFile is { } pidPath ? PidFile.Write(pidPath) : null;
            return Serve(settings, context, device, listeners, credentials, signals.Stopping);
        }
        finally
        {
            pidFile?.Dispose();
        }
    }

    private static int Serve(ServeSettings settings, CommandContext context, BlockDevice device, ServeListeners listeners,
        NbdTlsCredentials? credentials, CancellationToken stopping)
    {

        var errorLock = new object();
        void Report(string line)
        {
            lock (errorLock)
            {
                context.Err.WriteLine($"{Program.Name}: {line}");
            }
        }

        var options = new NbdServerOptions
        {
            MaxConnections = settings.Shared == 0 ? int.MaxValue : settings.Shared,
            Persistent = settings.Persistent,
            HandshakeTimeout = Seconds(settings.HandshakeLimitSeconds),
            IdleTimeout = Seconds(settings.IdleTimeoutSeconds),
            Diagnostics = settings.Verbose ? Report : null,
        };
        options = credentials?.ApplyTo(options) ?? options;
        var export = new NbdExport(settings.ExportName, device)
        {
            Description = settings.Description,
            ReadOnly = settings.ReadOnly,
            Discard = settings.Discard,
            AllocationDepth = settings.AllocationDepth,
        };
        var server = new NbdServer(export, options);
        if (settings.Verbose)
        {
            Report($"serving '{settings.FileName}' on {listeners.Address}{(credentials is null ? "" : " with TLS")}");
        }

        ServeDaemon.SignalReadyIfChild(keepStderr: settings.Verbose);
        server.RunAsync(listeners.Sockets, stopping).GetAwaiter().GetResult();
        if (!device.IsReadOnly)
        {
            device.Flush();
        }
        if (settings.Verbose)
        {
            Report("stopped");
        }
        return 0;
    }

    /// <summary>
    /// A format the library opens only read-only (qcow2) is exported read-only with one warning rather than refused:
    /// the user asked for the image served, and clients see the read-only flag in the handshake. Probing failures are
    /// left to the open, which words them; the warning is returned to be printed once the image has opened.
    /// </summary>
    private static string? ReadOnlyWhenUnwritable(ref ServeSettings settings)
    {
        if (settings.ReadOnly || Qed.Nbd.Client.NbdUri.IsNbdUri(settings.FileName))
        {
            return null;
        }
        ImageFormat? format;
        try
        {
            format = settings.Format is { } name ? ImageFormats.Find(name) : ImageFormats.Probe(settings.FileName);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        if (format is not { CanOpen: true, CanWrite: false })
        {
            return null;
        }
        settings = settings with { ReadOnly = true };
        return $"'{settings.FileName}' is a {format.Name} image, which qed serves read-only: exporting it read-only";
    }

    private static NbdTlsCredentials? LoadCredentials(string? directory)
    {
        if (directory is null)
        {
            return null;
        }
        try
        {
            return NbdTlsCredentials.Load(directory);
        }
        catch (IOException e)
        {
            throw new CliException(Program.Describe(e), e);
        }
    }

    private static TimeSpan Seconds(int seconds) => seconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(seconds);
}
