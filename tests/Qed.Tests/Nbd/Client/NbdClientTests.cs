using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using Qed.Image;
using Qed.Nbd.Client;
using Qed.Nbd.Protocol;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Nbd.Client;

/// <summary>
/// Our NBD client against qemu-nbd (the oracle server) and against our own server: what it reads equals qemu-img's
/// flattening of the image, what it writes qemu-img compare finds in the image, its block status equals qemu-img map
/// over the same URI (qemu's client on the same server), and every handshake fallback reads the same bytes.
/// </summary>
public sealed class NbdClientTests
{
    private const long Size = 16L * 1024 * 1024;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    /// <summary>A QED overlay over a raw backing file: backing data, overlay data, a zero cluster, an unaligned write, unallocated rest.</summary>
    internal static string MakeLayeredImage(TempDirectory dir)
    {
        string backing = dir.File("base.raw");
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "raw", backing, "8M");
        Tools.QemuIo(dir.Path, "raw", backing, "write -P 0x11 0 1M", "write -P 0x12 5M 64k");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", backing, "-F", "raw", image, Size.ToString(CultureInfo.InvariantCulture));
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x22 2M 1M", "write -z 4M 1M", "write -P 0x33 6001000 5000", "write -z 5M 64k");
        return image;
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Reads_equal_qemu_img_flattening_with_every_handshake(string server)
    {
        using var dir = new TempDirectory();
        string image = MakeLayeredImage(dir);
        string expected = Tools.QemuFlattenDigest(dir.Path, image);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true);

        var variants = new (string Name, NbdClientOptions Options)[]
        {
            ("default", new NbdClientOptions()),
            ("1 MiB payloads", new NbdClientOptions { MaxPayload = 1024 * 1024 }),
            ("simple replies", new NbdClientOptions { StructuredReplies = false }),
            ("EXPORT_NAME", new NbdClientOptions { UseGo = false }),
        };
        int ran = 0;
        foreach (var (name, options) in variants)
        {
            await using var client = await Connect(served.SocketPath, "", options);
            Assert.Equal(Size, client.Size);
            Assert.True(client.IsReadOnly, name);
            Assert.Equal(options.StructuredReplies, client.StructuredReplies);
            Assert.Equal(options.StructuredReplies, client.BaseAllocation);
            Assert.Equal(!options.UseGo, client.Info.UsedExportName);
            var data = new byte[Size];
            data.AsSpan().Fill(0xee); // holes must be zero-filled, not left as they were
            await client.ReadAsync(data, 0).AsTask().WaitAsync(s_timeout);
            Assert.True(expected == Convert.ToHexStringLower(SHA256.HashData(data)), $"{server}, {name}: the read differs from qemu-img convert");
            ran++;
        }
        Assert.Equal(variants.Length, ran);
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Handshake_reports_what_the_server_advertises(string server)
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: false, "the disk", "a description");

        await using var client = await NbdClient.ConnectAsync(served.Uri("the disk"), CancellationToken.None).WaitAsync(s_timeout);
        Assert.Equal("the disk", client.ExportName);
        Assert.Equal("a description", client.Description);
        Assert.False(client.IsReadOnly);
        Assert.True(client.CanFlush && client.CanForceUnitAccess && client.CanTrim && client.CanWriteZeroes && client.CanCache);
        Assert.True(client.StructuredReplies && client.BaseAllocation);
        Assert.True(client.CanMultiConn || server == ServedImage.QemuNbd, "our server offers multi-conn (one engine, one cache)");
        Assert.True(client.Info.BlockSizesAdvertised, "the server sent a valid NBD_INFO_BLOCK_SIZE");
        Assert.Equal(32 * 1024 * 1024, client.MaximumPayload);
        if (server == ServedImage.QemuNbd)
        {
            // qemu-nbd advertises 512/4096/32 MiB for QED (NBD.md 3.1).
            Assert.Equal(512, client.MinimumBlockSize);
            Assert.Equal(4096, client.PreferredBlockSize);
        }

        var refused = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync(served.Uri("nope"), CancellationToken.None).WaitAsync(s_timeout));
        Assert.Contains("export 'nope' is not available", refused.Message, StringComparison.Ordinal);
        Assert.Contains("server reported", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Block_status_equals_qemu_img_map_over_the_same_uri(string server)
    {
        using var dir = new TempDirectory();
        string image = MakeLayeredImage(dir);
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true);

        var expected = QemuMap(dir.Path, served.Uri());
        await using var client = await Connect(served.SocketPath, "", new NbdClientOptions());
        var actual = new List<(long Start, long Length, bool Zero, bool Data)>();
        for (long offset = 0; offset < client.Size;)
        {
            var extents = await client.GetBlockStatusAsync(offset, client.Size - offset).AsTask().WaitAsync(s_timeout);
            Assert.NotEmpty(extents);
            foreach (var extent in extents)
            {
                Assert.Equal(offset, extent.Offset);
                Add(actual, (extent.Offset, extent.Length, extent.IsZero, !extent.IsHole));
                offset += extent.Length;
            }
        }
        Assert.Equal(expected, actual);
        Assert.True(expected.Count >= 5, $"the image should show several kinds of extents, qemu-img map shows {expected.Count}");
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Writes_through_the_client_are_what_qemu_img_compare_finds(string server)
    {
        int seed = TestSeed.For($"{nameof(Writes_through_the_client_are_what_qemu_img_compare_finds)}({server})");
        var random = new Random(seed);
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, Size.ToString(CultureInfo.InvariantCulture));
        var model = new byte[Size];
        int operations = 0;
        await using (var served = ServedImage.Start(server, dir.Path, image, readOnly: false))
        {
            await using var client = await Connect(served.SocketPath, "", new NbdClientOptions { MaxPayload = 256 * 1024 });
            for (int i = 0; i < 60; i++)
            {
                long offset = random.NextInt64(Size / 512) * 512;
                int length = (int)Math.Min(Size - offset, (random.Next(1, 2048) * 512));
                switch (random.Next(4))
                {
                    case 0:
                        await client.WriteZeroesAsync(offset, length, random.Next(2) == 0 ? NbdWriteZeroesFlags.None : NbdWriteZeroesFlags.NoHole).AsTask().WaitAsync(s_timeout);
                        model.AsSpan((int)offset, length).Clear();
                        break;
                    default:
                        var data = new byte[length];
                        random.NextBytes(data);
                        await client.WriteAsync(data, offset, forceUnitAccess: random.Next(4) == 0).AsTask().WaitAsync(s_timeout);
                        data.CopyTo(model, offset);
                        break;
                }
                operations++;
                if (random.Next(8) == 0)
                {
                    var back = new byte[length];
                    await client.ReadAsync(back, offset).AsTask().WaitAsync(s_timeout);
                    Assert.True(back.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)), $"read-back at {offset} differs (seed {seed})");
                }
            }
            await client.CacheAsync(0, Size).AsTask().WaitAsync(s_timeout);
            await client.FlushAsync().AsTask().WaitAsync(s_timeout);
        }
        string reference = dir.File("model.raw");
        await File.WriteAllBytesAsync(reference, model);
        var compare = Tools.QemuImgRaw(dir.Path, "compare", "-f", "qed", "-F", "raw", image, reference);
        Assert.True(compare.ExitCode == 0, $"qemu-img compare after {operations} operations (seed {seed}): {compare}");
        Assert.Equal(60, operations);
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Many_concurrent_requests_on_one_connection(string server)
    {
        int seed = TestSeed.For($"{nameof(Many_concurrent_requests_on_one_connection)}({server})");
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, Size.ToString(CultureInfo.InvariantCulture));
        var model = new byte[Size];
        const int Workers = 32;
        const int OperationsPerWorker = 40;
        long stripe = Size / Workers;
        int done = 0;
        await using (var served = ServedImage.Start(server, dir.Path, image, readOnly: false))
        {
            await using var client = await Connect(served.SocketPath, "", new NbdClientOptions { MaxPayload = 64 * 1024 });
            // Each worker owns a stripe (so the model is exact) and keeps two requests of its own in flight.
            var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(async () =>
            {
                var random = new Random(seed + w);
                long start = w * stripe;
                for (int i = 0; i < OperationsPerWorker; i++)
                {
                    long half = stripe / 2;
                    var tasks = new List<Task>();
                    for (int part = 0; part < 2; part++)
                    {
                        long offset = start + (part * half) + (random.NextInt64(half / 512 - 64) * 512);
                        int length = random.Next(1, 64) * 512;
                        if (random.Next(3) == 0)
                        {
                            var back = new byte[length];
                            tasks.Add(client.ReadAsync(back, offset).AsTask().ContinueWith(t =>
                            {
                                t.GetAwaiter().GetResult();
                                Assert.True(back.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)), $"worker {w} read at {offset} differs (seed {seed})");
                            }, TaskScheduler.Default));
                        }
                        else
                        {
                            var data = new byte[length];
                            random.NextBytes(data);
                            data.CopyTo(model, offset);
                            tasks.Add(client.WriteAsync(data, offset).AsTask());
                        }
                    }
                    await Task.WhenAll(tasks);
                    Interlocked.Increment(ref done);
                }
            })).ToArray();
            await Task.WhenAll(workers).WaitAsync(s_timeout);
            await client.FlushAsync().AsTask().WaitAsync(s_timeout);
        }
        Assert.Equal(Workers * OperationsPerWorker, done);
        string reference = dir.File("model.raw");
        await File.WriteAllBytesAsync(reference, model);
        var compare = Tools.QemuImgRaw(dir.Path, "compare", "-f", "qed", "-F", "raw", image, reference);
        Assert.True(compare.ExitCode == 0, $"qemu-img compare (seed {seed}): {compare}");
    }

    [Theory]
    [InlineData(ServedImage.QemuNbd)]
    [InlineData(ServedImage.Qed)]
    public async Task Server_refusals_carry_the_errno_and_leave_the_connection_usable(string server)
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x44 0 64k");
        await using var served = ServedImage.Start(server, dir.Path, image, readOnly: true);
        await using var client = await Connect(served.SocketPath, "", new NbdClientOptions());

        await Assert.ThrowsAsync<QedReadOnlyException>(() => client.WriteAsync(new byte[512], 0).AsTask());
        // Past the end, unchecked: qemu-nbd answers EINVAL with a message in an error chunk.
        var buffer = new byte[4096];
        var refused = await Assert.ThrowsAsync<NbdException>(() =>
            client.SendUncheckedAsync(NbdCommand.Read, 0, (ulong)client.Size, 4096, ReadOnlyMemory<byte>.Empty, buffer, CancellationToken.None).WaitAsync(s_timeout));
        Assert.Equal("EINVAL", refused.ErrorName);
        Assert.Equal(22, refused.Error);
        Assert.Contains("Invalid argument", refused.Message, StringComparison.Ordinal);
        refused = await Assert.ThrowsAsync<NbdException>(() =>
            client.SendUncheckedAsync(NbdCommand.Write, 0, 0, 512, new byte[512], Memory<byte>.Empty, CancellationToken.None).WaitAsync(s_timeout));
        // The spec says EPERM; qemu-nbd 7.2 answers EINVAL (NBD.md 2.8).
        Assert.Equal(server == ServedImage.QemuNbd ? "EINVAL" : "EPERM", refused.ErrorName);

        await client.ReadAsync(buffer, 0).AsTask().WaitAsync(s_timeout);
        Assert.All(buffer, b => Assert.Equal(0x44, b));
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = client.ReadAsync(buffer, client.Size - 1); });
    }

    [Fact]
    public async Task Tcp_uris_over_ipv4_ipv6_and_a_host_name()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        Tools.QemuIo(dir.Path, "qed", image, "write -P 0x5c 1M 64k");
        int ran = 0;
        foreach (var (address, host) in new[] { (System.Net.IPAddress.Loopback, "127.0.0.1"), (System.Net.IPAddress.Loopback, "localhost"), (System.Net.IPAddress.IPv6Loopback, "[::1]") })
        {
            var (server, port) = QemuNbdServer.StartTcp(image, address, "-f", "qed", "-r", "-x", "d");
            using (server)
            {
                string uri = $"nbd://{host}:{port}/d";
                await using var client = await NbdClient.ConnectAsync(uri, CancellationToken.None).WaitAsync(s_timeout);
                var buffer = new byte[65536];
                await client.ReadAsync(buffer, 1 << 20).AsTask().WaitAsync(s_timeout);
                Assert.All(buffer, b => Assert.Equal(0x5c, b));
                await using var device = await DiskImage.OpenAsync($"nbd+tcp://{host}:{port}/d", "raw", new ImageOpenOptions { ReadOnly = true });
                Assert.Equal(4L << 20, device.Size);
                ran++;
            }
        }
        Assert.Equal(3, ran);
    }

    [Fact]
    public async Task Cancellation_before_sending_leaves_the_connection_usable()
    {
        using var dir = new TempDirectory();
        string image = dir.File("disk.qed");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", image, "4M");
        await using var served = ServedImage.Start(ServedImage.Qed, dir.Path, image, readOnly: true);
        await using var client = await Connect(served.SocketPath, "", new NbdClientOptions());
        var buffer = new byte[4096];
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.ReadAsync(buffer, 0, new CancellationToken(true)).AsTask());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetBlockStatusAsync(0, 4096, new CancellationToken(true)).AsTask());
        buffer.AsSpan().Fill(1);
        await client.ReadAsync(buffer, 0).AsTask().WaitAsync(s_timeout);
        Assert.All(buffer, b => Assert.Equal(0, b));
    }

    internal static Task<NbdClient> Connect(string socketPath, string export, NbdClientOptions options) =>
        NbdClient.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), export, socketPath, options, CancellationToken.None).WaitAsync(s_timeout);

    /// <summary><c>qemu-img map --output=json</c> of a URI as (start, length, zero, data), adjacent equal extents merged.</summary>
    internal static List<(long Start, long Length, bool Zero, bool Data)> QemuMap(string directory, string uri)
    {
        var result = Tools.QemuImg(directory, "map", "--output=json", uri);
        var list = new List<(long, long, bool, bool)>();
        using var json = JsonDocument.Parse(result.StdOut);
        foreach (var element in json.RootElement.EnumerateArray())
        {
            Add(list, (element.GetProperty("start").GetInt64(), element.GetProperty("length").GetInt64(),
                element.GetProperty("zero").GetBoolean(), element.GetProperty("data").GetBoolean()));
        }
        return list;
    }

    internal static void Add(List<(long Start, long Length, bool Zero, bool Data)> list, (long Start, long Length, bool Zero, bool Data) extent)
    {
        if (list.Count > 0 && list[^1] is var last && last.Start + last.Length == extent.Start && last.Zero == extent.Zero && last.Data == extent.Data)
        {
            list[^1] = last with { Length = last.Length + extent.Length };
        }
        else
        {
            list.Add(extent);
        }
    }
}
