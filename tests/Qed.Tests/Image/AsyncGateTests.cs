using Qed.Image;

namespace Qed.Tests.Image;

/// <summary>The engine's lock: exclusion across sync and async takers, hand-over in order, and a canceled waiter that neither takes nor loses the gate.</summary>
public class AsyncGateTests
{
    [Fact]
    public async Task MixedTakers_NeverOverlap()
    {
        const int takers = 8;
        const int rounds = 2000;
        using var gate = new AsyncGate();
        int inside = 0;
        int entries = 0;
        var tasks = Enumerable.Range(0, takers).Select(t => Task.Run(async () =>
        {
            bool useAsync = t % 2 == 0;
            for (int i = 0; i < rounds; i++)
            {
                await gate.EnterAsync(useAsync, CancellationToken.None);
                Assert.Equal(1, Interlocked.Increment(ref inside));
                entries++;
                if (i % 7 == 0)
                {
                    await Task.Yield();
                }
                Interlocked.Decrement(ref inside);
                gate.Exit();
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.Equal(takers * rounds, entries);
        Assert.False(gate.IsHeld);
    }

    [Fact]
    public async Task Waiters_AreServedInOrder()
    {
        using var gate = new AsyncGate();
        await gate.EnterAsync(true, CancellationToken.None);
        var order = new List<int>();
        var waits = Enumerable.Range(0, 5).Select(i => gate.EnterAsync(true, CancellationToken.None).AsTask().ContinueWith(_ =>
        {
            lock (order)
            {
                order.Add(i);
            }
            gate.Exit();
        })).ToArray();
        gate.Exit();
        await Task.WhenAll(waits);
        Assert.Equal([0, 1, 2, 3, 4], order);
        Assert.False(gate.IsHeld);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task CanceledWaiter_Throws_AndTheGatePassesOn(bool useAsync)
    {
        using var gate = new AsyncGate();
        await gate.EnterAsync(true, CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var canceled = Task.Run(async () => await gate.EnterAsync(useAsync, cancel.Token));
        await Task.Delay(50);
        var next = gate.EnterAsync(true, CancellationToken.None).AsTask();
        cancel.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => canceled);
        Assert.False(next.IsCompleted);
        gate.Exit();
        await next.WaitAsync(TimeSpan.FromSeconds(10));
        gate.Exit();
        Assert.False(gate.IsHeld);
    }
}
