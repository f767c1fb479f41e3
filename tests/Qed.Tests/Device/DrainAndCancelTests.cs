using Qed.Check;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Device;

/// <summary>Dispose waits for the requests in flight and refuses new ones; canceled tokens stop async requests.</summary>
public class DrainAndCancelTests
{
    private const int Cs = 65536;

    [Theory]
    [MemberData(nameof(Dev.KindsAndModes), MemberType = typeof(Dev))]
    public async Task Dispose_WaitsForRequestsInFlight_ThenRefusesNewOnes(string kind, bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, 4 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        var device = await ForceUnitAccessTests.OpenObserved(path, kind, file, useAsync);
        await Img.Write(device, 0, Img.Fill(Cs, 0x11), useAsync); // allocated: the write below is in place

        using var entered = new SemaphoreSlim(0);
        using var release = new ManualResetEventSlim();
        int armed = 1;
        file.BeforeWrite = (_, length) =>
        {
            if (length == 4096 && Interlocked.Exchange(ref armed, 0) == 1)
            {
                entered.Release();
                release.Wait(TimeSpan.FromSeconds(30));
            }
        };
        var write = Task.Run(() => Img.Write(device, 4096, Img.Fill(4096, 0x22), useAsync));
        Assert.True(await entered.WaitAsync(TimeSpan.FromSeconds(10)), "the write did not start");

        Task closing = useAsync ? device.DisposeAsync().AsTask() : Task.Run(device.Dispose);
        await Task.Delay(200);
        Assert.False(closing.IsCompleted, "dispose did not wait for the write in flight");
        Assert.False(write.IsCompleted);
        // New requests are refused at once, while the old one still runs.
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Img.Read(device, 0, 512, useAsync));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Img.Flush(device, useAsync));

        release.Set();
        await write.WaitAsync(TimeSpan.FromSeconds(10));
        await closing.WaitAsync(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => Img.Write(device, 0, 512, 0x33, useAsync));

        Dev.QemuReads(dir, path, kind, 4096, 4096, 0x22);
        Dev.QemuCheckClean(dir, path, kind);
    }

    [Theory]
    [InlineData("qed")]
    [InlineData("qed-backing")]
    [InlineData("raw")]
    public async Task CanceledToken_StopsEveryAsyncRequest_DeviceStaysUsable(string kind)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, 4 * Img.MiB);
        string digest = Tools.Sha256OfFile(path);
        using var canceled = new CancellationTokenSource();
        canceled.Cancel();
        var token = canceled.Token;
        int refused = 0;
        await using (var device = await Dev.Open(path, kind, useAsync: true))
        {
            async Task Refused(Func<Task> request)
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(request);
                refused++;
            }
            await Refused(async () => await device.ReadAsync(new byte[4096], 0, token));
            await Refused(async () => await device.WriteAsync(new byte[4096], 0, token));
            await Refused(async () => await device.WriteAsync(new byte[4096], 0, WriteFlags.ForceUnitAccess, token));
            await Refused(async () => await device.WriteZeroesAsync(0, Cs, WriteZeroesFlags.MayUnmap, token));
            await Refused(async () => await device.DiscardAsync(0, Cs, token));
            await Refused(async () => await device.FlushAsync(token));
            await Refused(async () => await device.ResizeAsync(8 * Img.MiB, token));
            await Refused(async () => await device.GetStatusAsync(0, Cs, token));
            if (device is QedImage image)
            {
                await Refused(async () => await image.CheckAsync(RepairMode.All, token));
            }
            Assert.Equal(kind == "raw" ? 8 : 9, refused);
            Assert.Equal(4 * Img.MiB, device.Size);
        }
        Assert.Equal(digest, Tools.Sha256OfFile(path));

        await using (var device = await Dev.Open(path, kind, useAsync: true))
        {
            await device.WriteAsync(Img.Fill(4096, 0x44), 0);
            Img.AllBytes(0x44, await Img.Read(device, 0, 4096, useAsync: true));
        }
        Dev.QemuCheckClean(dir, path, kind);
    }

    [Theory]
    [InlineData("qed")]
    [InlineData("qed-backing")]
    [InlineData("raw")]
    public async Task TokenCanceledMidRequest_StopsIt_ImageStaysConsistent(string kind)
    {
        using var dir = new TempDirectory();
        string path = Dev.Create(dir, kind, 16 * Img.MiB);
        var file = new ObservedFileAccessor(HandleFileAccessor.Open(path, readOnly: false));
        await using (var device = await ForceUnitAccessTests.OpenObserved(path, kind, file, useAsync: true))
        {
            await device.WriteAsync(Img.Fill(8 * Img.MiB, 0x55), 0);
            using var source = new CancellationTokenSource();
            int writes = 0;
            // Cancel during the first write of the zeroing; the next one must not happen.
            file.BeforeWrite = (_, _) =>
            {
                writes++;
                source.Cancel();
            };
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await device.WriteZeroesAsync(0, 8 * Img.MiB, source.Token));
            Assert.Equal(1, writes);
            file.BeforeWrite = null;
            Img.AllBytes(0x55, await Img.Read(device, Img.MiB, 7 * Img.MiB, useAsync: true), "after the canceled zeroing");
            await device.WriteZeroesAsync(0, 8 * Img.MiB);
            Img.AllBytes(0, await Img.Read(device, 0, 8 * Img.MiB, useAsync: true), "zeroed");
        }
        Dev.QemuReads(dir, path, kind, 0, 8 * Img.MiB, 0);
        Dev.QemuCheckClean(dir, path, kind);
    }
}
