using System.Collections.Concurrent;
using Qed.Image;
using Qed.Nbd.Server;

namespace Qed.Tests.Nbd.Negotiation;

/// <summary>Images and servers for the handshake tests: a small QED image, and a test server whose drops are recorded.</summary>
internal static class NegotiationImages
{
    public const long Size = 4L * 1024 * 1024;
    public const int ClusterSize = 64 * 1024;

    public static string Create(string directory, string name = "disk.qed", int clusterSize = ClusterSize)
    {
        string path = Path.Combine(directory, name);
        QedImage.Create(path, new QedCreateOptions { Size = Size, ClusterSize = clusterSize });
        return path;
    }

    /// <summary>An <see cref="NbdTestServer"/> over a fresh image; <paramref name="diagnostics"/> collects its one-line reports.</summary>
    public static NbdTestServer Serve(
        string directory,
        ConcurrentQueue<string> diagnostics,
        string exportName = "",
        bool readOnly = false,
        Func<NbdExport, NbdExport>? configureExport = null,
        Func<NbdServerOptions, NbdServerOptions>? configureOptions = null) =>
        NbdTestServer.Start(
            directory,
            Create(directory),
            exportName,
            readOnly,
            configureExport,
            options =>
            {
                options = options with { Diagnostics = diagnostics.Enqueue };
                return configureOptions?.Invoke(options) ?? options;
            });
}
