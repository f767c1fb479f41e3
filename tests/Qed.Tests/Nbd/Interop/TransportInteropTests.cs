using System.Globalization;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Interop;

/// <summary>
/// <c>qed serve</c> reached by libnbd and qemu over each transport issue 9 names: a unix socket, TCP on IPv4, TCP on
/// IPv6, and one dual-stack listener (<c>-b ::</c>) reached both ways. Each serves nbdinfo, a qemu-img compare of the
/// whole disk and an nbdcopy out of it.
/// </summary>
public sealed class TransportInteropTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Unix_tcp4_tcp6_and_dual_stack_listeners_serve_the_same_disk()
    {
        using var dir = new TempDirectory();
        string image = InteropImages.Layered(dir.File("disk"));
        string reference = InteropImages.Flatten(image, dir.File("ref.raw"));
        string Port() => NbdServerProcess.FreeTcpPort().ToString(CultureInfo.InvariantCulture);
        var listeners = new (string Name, string[] Arguments, string[] Hosts)[]
        {
            ("unix socket", ["-k", dir.File("s.sock")], []),
            ("TCP 127.0.0.1", ["-b", "127.0.0.1", "-p", Port()], ["127.0.0.1"]),
            ("TCP ::1", ["-b", "::1", "-p", Port()], ["[::1]"]),
            ("TCP :: (dual stack)", ["-b", "::", "-p", Port()], ["127.0.0.1", "[::1]"]),
        };
        int served = 0;
        foreach (var (name, arguments, hosts) in listeners)
        {
            await using var qed = NbdServerProcess.Start(NbdServerKind.Qed, dir.Path, ["-t", "-r", "-e", "2", "-f", "qed", .. arguments, image]);
            foreach (string uri in hosts.Length == 0 ? [qed.Uri()] : hosts.Select(host => qed.TcpUri(host)))
            {
                Assert.Equal(InteropImages.SizeText, InteropRun.Ok(qed, "nbdinfo", "--size", uri).StdOut.Trim());
                Assert.Contains("Images are identical.", InteropRun.Ok(qed, "qemu-img", "compare", "-f", "raw", "-F", "raw", reference, uri).StdOut, StringComparison.Ordinal);
                string copy = dir.File($"copy-{served}.raw");
                InteropRun.Ok(qed, "nbdcopy", uri, copy);
                Assert.True(InteropImages.SameContent(reference, copy), $"nbdcopy over {name} ({uri}) differs");
                File.Delete(copy);
                output.WriteLine($"{name}: {uri} served nbdinfo, qemu-img compare and nbdcopy");
                served++;
            }
            await qed.StopCleanlyAsync();
        }
        Assert.Equal(5, served);
        InteropImages.AssertChecksClean(image);
    }
}
